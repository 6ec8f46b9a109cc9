"""Drives a real QGIS desktop as a new user would; run by scripts/desktop_check.sh.

QGIS runs this file at start-up (``qgis --code``). The steps are chained with Qt timers so that
QGIS's event loop keeps running (the installation and the segmentation run in the background):

1. the plugin, installed from the zip into a fresh profile, is loaded; torch is not importable;
2. the toolbar button opens the dock, which lists the missing packages;
3. *Install* installs them (pip with QGIS's own Python, into the profile), no restart;
4. the bundled Rotterdam sample is loaded and segmented from the dock;
5. a label layer is made, the sample's digitised polygons are added, a short fine-tune runs
   and re-segments; the Gates & KD tab is shown;
6. *Check environment* is opened and its report saved; ``sgcad:segment`` runs from Processing
   the way the Toolbox runs it;
7. the plugin is unloaded while the drawing tool is active, then QGIS quits.

Screenshots go to ``$SGCAD_CHECK_OUT/screens``; ``$SGCAD_CHECK_OUT/result.json`` holds what was
checked. Nothing here is part of the plugin.
"""

import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

from qgis.core import Qgis, QgsApplication, QgsProject, QgsRasterLayer, QgsVectorLayer
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtWidgets import QApplication
from qgis.utils import iface

OUT = Path(os.environ.get("SGCAD_CHECK_OUT") or Path(tempfile.gettempdir()) / "sgcad_desktop_check")
SCREENS = OUT / "screens"
SCREENS.mkdir(parents=True, exist_ok=True)
PLUGIN = "sgcad_qgis"
FINETUNE_EPOCHS = int(os.environ.get("SGCAD_CHECK_EPOCHS", "2"))

result = {"steps": [], "errors": [], "log": [], "checks": {}}
state = {}


def note(text):
    result["steps"].append(f"{time.strftime('%H:%M:%S')} {text}")
    print("desktop-check:", text, flush=True)


def save():
    (OUT / "result.json").write_text(json.dumps(result, indent=2, default=str))


def shot(name):
    QApplication.processEvents()
    screen = QApplication.primaryScreen()
    path = SCREENS / f"{name}.png"
    screen.grabWindow(0).save(str(path))  # the whole screen: dialogs and message bars included
    note(f"screenshot {path.name}")


def on_log(message, tag, level):
    result["log"].append([tag, int(level), message[:500]])


QgsApplication.messageLog().messageReceived.connect(on_log)
_hook = sys.excepthook


def record_exception(kind, value, tb):
    result["errors"].append("".join(traceback.format_exception(kind, value, tb))[-3000:])
    _hook(kind, value, tb)


sys.excepthook = record_exception


def plugin():
    import qgis.utils

    return qgis.utils.plugins.get(PLUGIN)


def wait(condition, then, timeout_s, label):
    """Poll ``condition`` every 0.5 s (QGIS keeps running), then call ``then``."""
    start = time.monotonic()

    def tick():
        try:
            done = condition()
        except Exception:
            result["errors"].append(traceback.format_exc())
            done = True
        if done:
            QTimer.singleShot(500, lambda: run(then))
        elif time.monotonic() - start > timeout_s:
            note(f"TIMEOUT waiting for {label}")
            result["checks"][f"timeout: {label}"] = True
            QTimer.singleShot(100, lambda: run(finish))
        else:
            QTimer.singleShot(500, tick)

    QTimer.singleShot(500, tick)


def run(step):
    try:
        step()
    except Exception:
        result["errors"].append(traceback.format_exc())
        note(f"step {step.__name__} failed")
        save()
        QTimer.singleShot(100, finish)


def torch_importable():
    import importlib

    importlib.invalidate_caches()
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


# ---------------------------------------------------------------------------- steps
def start():
    iface.mainWindow().setGeometry(0, 0, 1600, 1000)  # Xvfb has no window manager to maximise it
    result["checks"]["torch_importable_at_start"] = torch_importable()
    result["checks"]["plugin_loaded"] = plugin() is not None
    result["checks"]["python"] = sys.version.split()[0]
    result["checks"]["sys_executable"] = sys.executable
    note(f"QGIS {Qgis.QGIS_VERSION}; plugin loaded: {plugin() is not None}; torch importable: "
         f"{result['checks']['torch_importable_at_start']}")
    shot("01_fresh_qgis")
    button = [a for a in plugin().actions if a.text() == "SGCAD segmentation…"][0]
    button.trigger()  # the toolbar button
    dock = plugin().dock
    state["dock"] = dock
    QTimer.singleShot(1500, lambda: run(dock_opened))


def dock_opened():
    dock = state["dock"]
    result["checks"]["dock_opened"] = dock is not None and dock.isVisible()
    result["checks"]["missing_listed"] = dock.setup.status.text()
    result["checks"]["install_plan"] = dock.setup.plan_text.text().replace("\u200b", "")
    result["checks"]["dock_width"] = dock.width()
    result["checks"]["dock_contents_need"] = dock.fit_width()
    shot("02_dock_missing_packages")
    dock.setup.install_button.click()
    note("Install clicked")
    state["install_started"] = time.monotonic()
    QTimer.singleShot(3000, lambda: run(lambda: shot("03_installing")))
    wait(lambda: not dock.setup.running() and time.monotonic() - state["install_started"] > 2,
         installed, 1500, "installation")


def installed():
    dock = state["dock"]
    result["checks"]["install_seconds"] = round(time.monotonic() - state["install_started"], 1)
    result["checks"]["install_log_tail"] = dock.setup.log.toPlainText().splitlines()[-15:]
    result["checks"]["torch_importable_after_install"] = torch_importable()
    result["checks"]["dock_enabled_after_install"] = dock.main.isEnabled()
    result["checks"]["status_after_install"] = dock.status.text()
    if result["checks"]["torch_importable_after_install"]:
        import torch

        result["checks"]["torch"] = f"{torch.__version__} from {Path(torch.__file__).parent}"
    shot("04_installed_no_restart")
    if not dock.main.isEnabled():
        run(finish)
        return
    sample = Path(QgsApplication.qgisSettingsDirPath()) / "python" / "plugins" / PLUGIN / "resources" / "sample"
    rotterdam = sample / "rotterdam"
    optical = QgsRasterLayer(str(rotterdam / "rgb_unmasked.tif"), "rgb_unmasked")
    sar = QgsRasterLayer(str(rotterdam / "sar_masked.tif"), "sar_masked")
    QgsProject.instance().addMapLayers([sar, optical])
    iface.mapCanvas().setExtent(optical.extent())
    iface.mapCanvas().refresh()
    state["rotterdam"] = rotterdam
    dock.optical.set_layer(optical)
    dock.sar.set_layer(sar)
    dock.output.setFilePath(str(OUT / "runs"))
    result["checks"]["teacher_default"] = dock.teacher.filePath()
    result["checks"]["model_default"] = dock.model_picker.current_path()
    state["progress"] = []
    dock.runner.progress.connect(lambda v: state["progress"].append(dock.progress.value()))
    dock.show_tab(0)
    state["runs_before"] = 0
    state["finished"] = []
    dock.runner.finished.connect(lambda *args: state["finished"].append(args[:2] + args[3:4]))
    started = dock.segment()
    note(f"Segment clicked: {started}; {dock.status.text()}")
    state["t0"] = time.monotonic()
    wait(lambda: len(state["finished"]) >= 1 and not dock.runner.busy(), segmented, 600, "segmentation")


def layer_tree():
    out = []
    for node in QgsProject.instance().layerTreeRoot().children():
        if hasattr(node, "layer") and node.layer() is not None:
            out.append([node.name(), node.isVisible()])
        else:
            out.append([node.name() + "/", node.isVisible(),
                        [[n.name(), n.isVisible()] for n in node.children()]])
    return out


def segmented():
    dock = state["dock"]
    result["checks"]["segment_run"] = state["finished"][0]
    result["checks"]["segment_seconds"] = round(time.monotonic() - state["t0"], 1)
    result["checks"]["tree_after_segment"] = layer_tree()
    result["checks"]["status_after_segment"] = dock.status.text()
    iface.mapCanvas().refresh()
    QTimer.singleShot(2000, lambda: run(after_segment_shot))


def after_segment_shot():
    shot("05_segmented")
    dock = state["dock"]
    dock.show_tab(1)
    layer = dock.labels.create_layer(None)
    polygons = QgsVectorLayer(f"{state['rotterdam'] / 'labels_digitised.gpkg'}|layername=labels", "digitised", "ogr")
    layer.startEditing()
    from qgis.core import QgsFeature

    for feature in polygons.getFeatures():
        new = QgsFeature(layer.fields())
        new.setGeometry(feature.geometry())
        new["class"] = feature["class"]
        layer.addFeature(new)
    layer.commitChanges()
    dock.labels._update_counts()
    result["checks"]["label_polygons"] = layer.featureCount()
    dock.epochs.setValue(FINETUNE_EPOCHS)
    state["progress"] = []
    iface.mapCanvas().refresh()
    QTimer.singleShot(1500, lambda: run(start_finetune))


def start_finetune():
    dock = state["dock"]
    shot("06_labels_on_top")
    result["checks"]["tree_with_labels"] = layer_tree()
    started = dock.finetune()
    note(f"Fine-tune clicked: {started}; {dock.status.text()}")
    state["t0"] = time.monotonic()
    wait(lambda: len(state["finished"]) >= 3 and not dock.runner.busy(), finetuned, 1200, "fine-tune + re-segment")


def finetuned():
    dock = state["dock"]
    result["checks"]["finetune_runs"] = state["finished"][1:]
    result["checks"]["finetune_seconds"] = round(time.monotonic() - state["t0"], 1)
    values = state["progress"]
    result["checks"]["progress_values"] = values
    result["checks"]["progress_never_backwards"] = values == sorted(values)
    result["checks"]["tree_after_finetune"] = layer_tree()
    bar = iface.messageBar()
    texts = [f"{item.title()}: {item.text()}" for item in bar.items()]
    result["checks"]["message_bar_texts"] = texts
    result["checks"]["message_bar_items"] = sum(t.startswith("SGCAD") for t in texts)
    dock.show_tab(2)
    iface.mapCanvas().refresh()
    QTimer.singleShot(2000, lambda: run(gates_shot))


def gates_shot():
    shot("07_finetuned_gates_tab")
    dock = state["dock"]
    from sgcad_qgis.gui.environment_dialog import EnvironmentDialog

    dialog = EnvironmentDialog(iface.mainWindow())
    dialog.save(str(OUT / "diagnostics.txt"))
    dialog.show()
    QTimer.singleShot(1500, lambda: run(lambda: environment_shot(dialog)))
    state["dialog"] = dialog
    del dock


def environment_shot(dialog):
    shot("08_check_environment")
    dialog.close()
    import processing

    rotterdam = state["rotterdam"]
    params = {"OPTICAL": str(rotterdam / "rgb_unmasked.tif"), "SAR": str(rotterdam / "sar_masked.tif"),
              "OUTPUT_FOLDER": str(OUT / "runs" / "toolbox")}
    # the Toolbox's own dialog: its widgets hold the parameters' defaults (the bundled models)
    toolbox = processing.createAlgorithmDialog("sgcad:segment", params)
    toolbox.show()
    state["toolbox"] = toolbox
    state["groups_before"] = len(QgsProject.instance().layerTreeRoot().findGroups())
    QTimer.singleShot(1500, lambda: run(toolbox_run))


def toolbox_run():
    shot("09_toolbox_dialog")
    toolbox = state["toolbox"]
    try:
        result["checks"]["toolbox_model_default"] = toolbox.mainWidget().wrappers["MODEL"].parameterValue()
    except (AttributeError, KeyError) as exc:
        result["checks"]["toolbox_model_default"] = f"not readable: {exc}"
    state["t0"] = time.monotonic()
    toolbox.runAlgorithm()  # the Run button
    wait(lambda: len(QgsProject.instance().layerTreeRoot().findGroups()) > state["groups_before"],
         toolbox_done, 600, "Toolbox run")


def toolbox_done():
    result["checks"]["toolbox_seconds"] = round(time.monotonic() - state["t0"], 1)
    result["checks"]["toolbox_log"] = state["toolbox"].log().toPlainText()[-1500:] if hasattr(
        state["toolbox"], "log") else ""
    state["toolbox"].close()
    result["checks"]["tree_after_toolbox"] = layer_tree()
    iface.mapCanvas().refresh()
    QTimer.singleShot(2000, lambda: run(unload_with_tool))


def unload_with_tool():
    shot("10_toolbox_results")
    import qgis.utils

    dock = state["dock"]
    dock.show_tab(1)
    dock.labels.draw_button.click()
    result["checks"]["tool_active_before_unload"] = iface.mapCanvas().mapTool() is dock.labels.tool
    errors_before = len(result["errors"])
    qgis.utils.unloadPlugin(PLUGIN)
    QApplication.processEvents()
    iface.actionPan().trigger()
    QApplication.processEvents()
    result["checks"]["errors_from_unload"] = result["errors"][errors_before:]
    QTimer.singleShot(1000, finish)


def finish():
    logs = result["log"]
    result["checks"]["ogr_cannot_open_lines"] = sum("Cannot open" in m for _, _, m in logs)
    result["checks"]["onnx_failure_lines"] = sum("ONNX export failed" in m for _, _, m in logs)
    result["checks"]["python_errors"] = len(result["errors"])
    save()
    note("done; quitting QGIS")
    QgsProject.instance().removeAllMapLayers()  # no "scratch layers will be lost?" question on exit
    QgsProject.instance().setDirty(False)  # nor "save the project?"
    QTimer.singleShot(500, lambda: iface.actionExit().trigger())


QTimer.singleShot(4000, lambda: run(start))
