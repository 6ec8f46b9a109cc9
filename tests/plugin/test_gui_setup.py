"""The dock without torch, its width, unloading with a map tool active, one message in the bar,
and one publishing function for the Toolbox and the dock (names, group, order, visibility)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from qgis.core import QgsProject, QgsRasterLayer
from qgis.PyQt.QtWidgets import QApplication, QTabWidget
from test_gui_dock import make_dock, rotterdam, shot  # noqa: F401

pytestmark = pytest.mark.gui

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def no_torch(monkeypatch):
    """QGIS's Python as a new user has it: torch and safetensors cannot be imported."""
    from sgcad_qgis import environment

    real = environment.import_module

    def fake(name):
        if name.split(".")[0] in ("torch", "safetensors"):
            raise ModuleNotFoundError(f"No module named '{name.split('.')[0]}'", name=name)
        return real(name)

    monkeypatch.setattr(environment, "import_module", fake)
    monkeypatch.setenv("SGCAD_TORCH_INDEX_URL", "")


def body_fits(dock) -> int:
    """Width the dock's scrolling contents need; asserts nothing is clipped at 400 px."""
    from sgcad_qgis.gui.dock import PANEL_WIDTH

    if not dock.isVisible():  # the stand-in main window is never shown: show the dock by itself
        dock.setParent(None)
        dock.resize(PANEL_WIDTH, 900)
        dock.show()
    QApplication.processEvents()
    body = dock.scroll.widget()
    need = dock.fit_width()
    assert need <= PANEL_WIDTH, f"contents need {need} px"
    assert body.width() <= dock.scroll.viewport().width() + 1  # no part hidden on the right
    assert dock.scroll.horizontalScrollBar().value() == 0  # nor on the left
    return need


def test_without_torch_the_plugin_loads_and_the_dock_says_what_is_missing(no_torch, recording_iface,
                                                                          qgis_new_project):
    from sgcad_qgis.plugin import SgcadPlugin

    plugin = SgcadPlugin(recording_iface)
    plugin.initGui()
    plugin.show_dock()  # the toolbar button: no ModuleNotFoundError
    dock = plugin.dock
    dock.resize(400, 900)
    dock.show()
    try:
        assert not dock.main.isEnabled() and dock.setup.isVisibleTo(dock)
        status = dock.setup.status.text()
        assert "<b>torch</b> (missing)" in status and "<b>safetensors</b> (missing)" in status
        plan = dock.setup.plan_text.text().replace("\u200b", "")
        assert "torch 2.13.0, CPU build" in plan and "safetensors==0.6.2" in plan
        assert "sgcad_deps" in plan and dock.setup.install_button.isEnabled()
        assert "Install the missing Python packages first" in dock.model_info.text()
        assert "missing" in dock.status.text()
        body_fits(dock)
        shot(dock, "dock_missing_packages")
    finally:
        plugin.unload()
    assert plugin.dock is None


def test_dock_fits_400_px_on_every_tab_and_tab_switches_do_not_scroll_sideways(rotterdam, make_dock):  # noqa: F811
    dock = make_dock()
    assert dock.setup.isHidden() or dock.setup.install_button.text() == "Install optional"
    for index in (1, 2, 0, 1):
        dock.show_tab(index)
        body_fits(dock)
        page = dock.tabs.widget(index)
        assert page.minimumSizeHint().width() <= dock.tabs.width()
    assert isinstance(dock.tabs, QTabWidget) and dock.tabs.usesScrollButtons()
    # the defaults are the bundled models
    assert Path(dock.teacher.filePath()).name == "sgcad_teacher.safetensors"


def test_unloading_with_the_drawing_tool_active_raises_nothing(recording_iface, rotterdam):  # noqa: F811
    from qgis.gui import QgsMapToolPan

    from sgcad_qgis.plugin import SgcadPlugin

    plugin = SgcadPlugin(recording_iface)
    plugin.initGui()
    plugin.show_dock()
    dock = plugin.dock
    dock.labels.create_layer(None)
    dock.labels.draw_button.click()
    canvas = recording_iface.mapCanvas()
    tool = dock.labels.tool
    assert canvas.mapTool() is tool
    errors = []
    import sys

    hook, sys.excepthook = sys.excepthook, lambda *exc: errors.append(exc)
    try:
        plugin.unload()
        QApplication.processEvents()
        pan = QgsMapToolPan(canvas)
        canvas.setMapTool(pan)  # what the user does next; the old tool must not call into the dock
        QApplication.processEvents()
        canvas.unsetMapTool(pan)
    finally:
        sys.excepthook = hook
    assert errors == [] and canvas.mapTool() is not tool


def test_one_message_in_the_bar_at_a_time(rotterdam, make_dock, recording_iface):  # noqa: F811
    from qgis.gui import QgsMessageBar

    bar = QgsMessageBar()
    dock = make_dock()
    dock.iface = type("Iface", (), {"messageBar": lambda self: bar, "mainWindow": lambda self: None})()
    for i in range(5):
        dock.notify(f"problem {i}", 2)
    dock.notify("progress note", 0)  # stays in the dock
    assert len(bar.items()) == 1 and bar.currentItem().text() == "problem 4"
    assert dock.status.text() == "progress note"


def write_outputs(folder: Path, shared_data: Path) -> dict:
    """Small rasters standing in for a segmentation's outputs (real GeoTIFFs)."""
    import numpy as np
    import rasterio

    src = shared_data / "spacenet6_rotterdam" / "rgb_unmasked.tif"
    with rasterio.open(src) as ds:
        profile = dict(ds.profile, count=1, dtype="float32", nodata=None)
        shape = (ds.height, ds.width)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for key, count, dtype in (("classes", 1, "uint8"), ("confidence", 1, "float32"),
                              ("water", 1, "float32"), ("gates", 3, "uint8")):
        path = folder / f"{key}.tif"
        with rasterio.open(path, "w", **dict(profile, count=count, dtype=dtype)) as ds:
            ds.write(np.ones((count, *shape), dtype=dtype))
        paths[key] = str(path)
    return paths


def tree_state(group):
    return [(node.layer().name(), node.isVisible()) for node in group.findLayers()]


def test_toolbox_and_dock_publish_the_same_layers_the_same_way(tmp_path, shared_data, qgis_new_project,
                                                               sgcad_provider, recording_iface):
    from processing.gui.Postprocessing import handleAlgorithmResults
    from qgis.core import QgsApplication, QgsProcessingContext, QgsProcessingFeedback
    from sgcad_qgis.engine.config import ClassSchema

    from sgcad_qgis import layers
    from sgcad_qgis.gui import labels, wiring

    project = QgsProject.instance()
    inputs = QgsRasterLayer(str(shared_data / "spacenet6_rotterdam" / "rgb_unmasked.tif"), "optical input")
    project.addMapLayer(inputs)
    label_layer = labels.create_label_layer(inputs.crs(), ClassSchema())
    project.addMapLayer(label_layer, False)
    project.layerTreeRoot().insertLayer(0, label_layer)
    paths = write_outputs(tmp_path / "run", shared_data)

    # the Toolbox: Processing loads the results when the algorithm has finished
    context = QgsProcessingContext()
    context.setProject(project)
    alg = QgsApplication.processingRegistry().algorithmById("sgcad:segment")
    alg.__class__._publish(context, paths, "sgcad_student", ClassSchema())
    logged = []
    log = QgsApplication.messageLog()
    log.messageReceived.connect(lambda message, tag, level: logged.append(f"{tag}: {message}"))
    assert handleAlgorithmResults(alg, context, QgsProcessingFeedback())
    QApplication.processEvents()
    assert not [m for m in logged if "Cannot open" in m], logged  # typed as a raster: OGR is not tried
    root = project.layerTreeRoot()
    toolbox = [g for g in root.findGroups() if g.name().startswith("SGCAD Segmentation")][0]

    # the dock: the algorithm's outputs, published by the same function
    results = {"CLASSES": paths["classes"], "CONFIDENCE": paths["confidence"],
               "WATER_PROBABILITY": paths["water"], "GATES": paths["gates"]}
    dock_group, shown = layers.publish_results(project, "SGCAD Segmentation dock", wiring.segment_layers(
        results, "sgcad_student"), ClassSchema())

    expected = [("Land cover (sgcad_student)", True), ("Teacher gate: confident water", False),
                ("Teacher gate: confident non-water", False), ("Teacher/student agree on water", False),
                ("Confidence (sgcad_student; negative = SAR only)", False),
                ("Water probability (water expert)", False)]
    assert tree_state(toolbox) == expected and tree_state(dock_group) == expected
    # label layer on top, then the newest run, then the older one, the inputs at the bottom
    order = [n.name() for n in root.children()]
    assert order[0] == label_layer.name() and order[1] == "SGCAD Segmentation dock"
    assert order[2] == toolbox.name() and order[-1] == "optical input"
    classes = project.mapLayer(shown["classes"])
    assert classes.renderer().type() == "paletted"
    assert Path(paths["classes"]).with_suffix(".qml").is_file()  # style kept when reopened
    assert Path(paths["gates"]).with_suffix(".qml").is_file()

    # a fine-tune's gate and ratio layers: added, hidden
    gates = write_outputs(tmp_path / "ft", shared_data)
    group, _ = layers.publish_results(project, "SGCAD Fine-tune", layers.finetune_results(
        gates["classes"], gates["water"], 64))
    assert tree_state(group) == [("KD gates (reliable water / non-water)", False),
                                 ("KD region ratio per 64-pixel block", False)]
    shutil.rmtree(tmp_path / "ft", ignore_errors=True)


def test_bundled_models_are_the_processing_defaults_and_algorithms_have_help(sgcad_provider):
    from qgis.core import QgsApplication

    registry = QgsApplication.processingRegistry()
    segment = registry.algorithmById("sgcad:segment")
    assert Path(segment.parameterDefinition("MODEL").defaultValue()).name == "sgcad_student.safetensors"
    assert Path(segment.parameterDefinition("TEACHER").defaultValue()).name == "sgcad_teacher.safetensors"
    # the dock always passes TEACHER: an emptied "Water expert" field means no teacher
    from qgis.core import QgsProcessingContext

    context = QgsProcessingContext()
    assert segment.parameterAsFile({"TEACHER": ""}, "TEACHER", context) == ""
    assert segment.parameterAsFile({}, "TEACHER", context).endswith("sgcad_teacher.safetensors")
    finetune = registry.algorithmById("sgcad:finetune")
    assert Path(finetune.parameterDefinition("STUDENT").defaultValue()).is_file()
    for alg in sgcad_provider.algorithms():
        url = alg.helpUrl()
        assert url.startswith("file://") and "#sgcad" in url, url
        from qgis.PyQt.QtCore import QUrl

        assert Path(QUrl(url).toLocalFile()).is_file()
    text = (ROOT / "docs" / "processing.md").read_text()
    assert "### `sgcad:segment` — Segment land cover (optical + SAR)" in text


def test_label_layer_fills_use_the_class_colours(qgis_new_project):
    from qgis.core import QgsCoordinateReferenceSystem
    from qgis.PyQt.QtGui import QColor
    from sgcad_qgis.engine.config import ClassSchema

    from sgcad_qgis.gui import labels

    schema = ClassSchema()
    layer = labels.create_label_layer(QgsCoordinateReferenceSystem("EPSG:32631"), schema)
    for category, color in zip(layer.renderer().categories(), schema.colors):
        fill = category.symbol().color()
        want = QColor(color)
        assert (fill.red(), fill.green(), fill.blue(), fill.alpha()) == (want.red(), want.green(), want.blue(), 153)
