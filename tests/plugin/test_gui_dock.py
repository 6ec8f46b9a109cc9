"""The SGCAD dock, driven like a user: pick layers, draw labels with the mouse, read messages.

Screenshots of the dock's main states are written to ``build/gui_screenshots`` (and the ones
used by docs/gui.md are copied from there by hand after looking at them).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import rasterio
from qgis.core import Qgis, QgsPointXY, QgsProject, QgsRasterLayer, QgsRectangle
from qgis.PyQt.QtCore import QPoint, Qt
from qgis.PyQt.QtTest import QTest

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "build" / "gui_screenshots"

pytestmark = pytest.mark.gui


def plain_preprocessing():
    """Fixed linear scaling (no percentiles to compute): dB SAR and 8-bit optical as they are."""
    from sgcad_qgis.engine.config import OpticalPreprocessConfig, SarPreprocessConfig

    return {"sar_preprocess": SarPreprocessConfig(lee_filter=False, to_db=False, robust_normalize=False),
            "optical_preprocess": OpticalPreprocessConfig(scale=1 / 255, robust_normalize=False)}


def tiny_model(path: Path, schema=None) -> Path:
    """A real (untrained) student checkpoint, small enough to build in milliseconds."""
    from sgcad_qgis.engine.config import ClassSchema, ModelMetadata, OpticalPreprocessConfig, StudentConfig, to_dict
    from sgcad_qgis.engine.models import build_model
    from sgcad_qgis.engine.models.checkpoint import save_model

    schema = schema or ClassSchema()
    cfg = StudentConfig(widths=(8, 8, 8, 8), blocks_per_stage=(1, 1, 1, 1), attention_dim=8,
                        decoder_channels=8, num_classes=schema.num_classes)
    meta = ModelMetadata(model=to_dict(cfg), schema=schema, **plain_preprocessing())
    # 8-bit optical by its own percentiles, as the bundled student reads it: the 200 x 200
    # Rotterdam sample is then a small clip, and the dock says so
    meta.optical_preprocess = OpticalPreprocessConfig()
    save_model(path, build_model(cfg), meta)
    return path


@pytest.fixture()
def rotterdam(tmp_path, shared_data, qgis_new_project, qgis_iface):
    """The real Rotterdam optical + 4-band SAR pair, loaded as project layers in a temp copy."""
    folder = tmp_path / "data"
    shutil.copytree(shared_data / "spacenet6_rotterdam", folder)
    optical = QgsRasterLayer(str(folder / "rgb_unmasked.tif"), "rgb_unmasked")
    sar = QgsRasterLayer(str(folder / "sar_masked.tif"), "sar_masked")
    assert optical.isValid() and sar.isValid()
    QgsProject.instance().addMapLayers([optical, sar])
    canvas = qgis_iface.mapCanvas()
    canvas.setDestinationCrs(optical.crs())
    canvas.setLayers([optical])
    canvas.setExtent(optical.extent())
    canvas.refresh()
    yield {"optical": optical, "sar": sar, "folder": folder}
    canvas.setLayers([])


@pytest.fixture()
def make_dock(recording_iface, tmp_path):
    """Builds docks like the plugin does (a tiny student selected) and closes them afterwards."""
    from sgcad_qgis.gui.dock import SgcadDock

    made = []

    def make():
        widget = SgcadDock(recording_iface)
        widget.finished_runs = []
        widget.runner.finished.connect(lambda *args: widget.finished_runs.append(args))
        widget.model_picker.set_path(str(tiny_model(tmp_path / "student.safetensors")))
        widget.output.setFilePath(str(tmp_path / "runs"))
        widget.resize(400, 1000)
        widget.show()
        made.append(widget)
        return widget

    yield make
    for widget in made:
        if widget.runner.busy():
            widget.runner.cancel()
            wait_for_run(widget, len(widget.finished_runs))
        widget.canvas.unsetMapTool(widget.labels.tool)
        widget.canvas.unsetMapTool(widget.area.tool)
        widget.close()
        widget.deleteLater()


@pytest.fixture()
def dock(rotterdam, make_dock):
    return make_dock()


def shot(widget, name: str) -> Path:
    from qgis.PyQt.QtWidgets import QApplication

    QApplication.processEvents()  # let layouts settle before grabbing
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    assert widget.grab().save(str(path))
    return path


def click(canvas, x: int, y: int, button=Qt.LeftButton) -> None:
    QTest.mouseMove(canvas.viewport(), QPoint(x, y))
    QTest.mouseClick(canvas.viewport(), button, Qt.NoModifier, QPoint(x, y))


def draw(canvas, points, finish=True) -> None:
    for x, y in points:
        click(canvas, x, y)
    if finish:
        click(canvas, *points[-1], button=Qt.RightButton)


def test_defaults_pick_optical_and_sar_layers_and_model_bands(dock, rotterdam):
    assert dock.optical.layer().id() == rotterdam["optical"].id()
    assert dock.sar.layer().id() == rotterdam["sar"].id()  # float32 4-band: SAR
    assert dock.optical.selected_bands() == [1, 2, 3]
    assert dock.sar.selected_bands() == [1]  # the model reads one SAR band of the four
    assert "6 classes" in dock.model_info.text() and "1 SAR" in dock.model_info.text()
    assert dock.device.combo.itemText(0).startswith("Automatic")
    assert dock.device.summary.text().startswith("Automatic runs on: ")
    assert [b.text() for b in dock.labels.palette._group.buttons()][:3] == ["farmland", "city", "village"]
    shot(dock, "dock_segment")  # as a user first sees it (docs/img/gui_segment.png)
    dock.sar.set_bands([2])
    assert dock.sar.selected_bands() == [2]
    dock.show_tab(2)
    assert not dock.report_button.isEnabled() and not dock.chart.epochs
    shot(dock, "dock_gates_empty")


def test_a_sentinel2_stack_is_ticked_by_band_roles(dock, shared_data, tmp_path):
    """A real 12-band Sentinel-2 stack (B01 ... B12, B8A) ticks B04, B03, B02, read in that order;
    bands the user ticks instead are read as ticked."""
    from sgcad_qgis.engine.raster.stack import stack_bands

    s2 = next((shared_data / "bigearthnet").rglob("S2A_MSIL2A_20170613T101031_87_48"))
    stack_bands([(p, 1) for p in sorted(s2.glob("*_B*.tif"))], tmp_path / "s2_all.tif")
    layer = QgsRasterLayer(str(tmp_path / "s2_all.tif"), "s2_all")
    QgsProject.instance().addMapLayer(layer)
    dock.optical.set_layer(layer)
    assert dock.optical.selected_bands() == [4, 3, 2]
    assert "read as red, green, blue" in dock.optical.bands.toolTip()
    dock.optical.bands.item(3).setCheckState(Qt.Unchecked)
    dock.optical.bands.item(7).setCheckState(Qt.Checked)
    assert dock.optical.selected_bands() == [2, 3, 8]
    rgb = QgsProject.instance().mapLayersByName("rgb_unmasked")[0]
    dock.optical.set_layer(rgb)
    assert dock.optical.selected_bands() == [1, 2, 3]
    # a model fine-tuned on the stack reads bands 4, 3, 2 as red, green, blue: the Toolbox's check
    # takes the RGB layer's own red, green, blue rather than refusing its missing band 4
    from types import SimpleNamespace

    from sgcad_qgis.engine.config import BandMapping

    from sgcad_qgis.algorithms import _checks

    meta = SimpleNamespace(bands=BandMapping(optical_bands=(4, 3, 2)))
    assert _checks.model_bands(meta, rgb, [], "optical", "optical layer") is None
    unnamed = SimpleNamespace(bands=BandMapping(optical_bands=(4, 3, 2), optical_names=("b4", "b3", "b2")))
    assert "[4] do not exist" in _checks.model_bands(unnamed, rgb, [], "optical", "optical layer")


def canvas_pixel(canvas, x_map: float, y_map: float):
    point = canvas.getCoordinateTransform().transform(x_map, y_map)
    return int(round(point.x())), int(round(point.y()))


def test_map_tool_draws_labelled_polygons_with_mouse_clicks(dock, rotterdam):
    canvas = dock.canvas
    dock.show_tab(1)
    layer = dock.labels.create_layer(None)
    assert layer is not None and layer.crs() == rotterdam["optical"].crs()
    assert dock.labels.layer() is layer
    assert layer.renderer().type() == "categorizedSymbol"
    assert [c.value() for c in layer.renderer().categories()] == list(dock.schema.names)

    dock.labels.palette.set_class("water")
    dock.labels.draw_button.click()
    assert canvas.mapTool() is dock.labels.tool
    ext = rotterdam["optical"].extent()
    x0, y0 = ext.xMinimum(), ext.yMinimum()
    w, h = ext.width(), ext.height()
    square = [canvas_pixel(canvas, x0 + w * fx, y0 + h * fy)
              for fx, fy in ((0.1, 0.1), (0.3, 0.1), (0.3, 0.3), (0.1, 0.3))]
    draw(canvas, square)
    dock.labels.palette.set_class("city")
    draw(canvas, [canvas_pixel(canvas, x0 + w * fx, y0 + h * fy)
                  for fx, fy in ((0.6, 0.6), (0.9, 0.6), (0.8, 0.9))])
    # Esc drops an unfinished polygon; two vertices are not a polygon
    draw(canvas, square[:3], finish=False)
    QTest.keyClick(canvas, Qt.Key_Escape)
    assert dock.labels.tool.points == []
    draw(canvas, square[:2])
    assert "at least three vertices" in dock.status.text()

    features = list(layer.getFeatures())
    assert [f["class"] for f in features] == ["water", "city"]
    water = features[0].geometry().boundingBox()
    # the polygon landed where it was clicked (within a pixel of the canvas)
    tol = canvas.mapUnitsPerPixel() * 1.5
    assert abs(water.xMinimum() - (x0 + 0.1 * w)) < tol and abs(water.xMaximum() - (x0 + 0.3 * w)) < tol
    assert abs(water.yMinimum() - (y0 + 0.1 * h)) < tol and abs(water.yMaximum() - (y0 + 0.3 * h)) < tol
    assert features[0].geometry().area() == pytest.approx(0.04 * w * h, rel=0.03)
    assert dock.labels.counts.text() == "2 polygon(s): city 1, water 1"
    # QGIS's own digitising gets the palette's class as the default value
    assert layer.defaultValueDefinition(layer.fields().indexOf("class")).expression() == "'city'"
    shot(dock, "dock_finetune")


def test_bad_states_give_clear_messages_and_start_nothing(dock, rotterdam, recording_iface):
    dock.tabs.setCurrentIndex(1)
    bar = recording_iface.messageBar()

    def attempt() -> str:
        assert dock.finetune() is False
        assert not dock.runner.busy()
        return dock.status.text()

    assert "needs a label layer" in attempt()
    layer = dock.labels.create_layer(None)
    assert attempt().startswith("No polygons yet")
    crs = dock.canvas.mapSettings().destinationCrs()
    from qgis.core import QgsGeometry

    from sgcad_qgis.gui import labels

    ext = rotterdam["optical"].extent()
    far = QgsGeometry.fromRect(QgsRectangle(ext.xMaximum() + 1e4, ext.yMinimum(),
                                            ext.xMaximum() + 2e4, ext.yMaximum()))
    labels.add_polygon(layer, far, crs, "water")
    assert "outside the imagery" in attempt()
    inside = QgsGeometry.fromRect(QgsRectangle(ext.xMinimum() + 10, ext.yMinimum() + 10,
                                               ext.xMinimum() + 200, ext.yMinimum() + 200))
    labels.add_polygon(layer, inside, crs, "water")
    assert "Only one class (water)" in attempt()
    labels.add_polygon(layer, inside.buffer(-20, 2), crs, "glacier")
    assert "['glacier'] are not classes of the model" in attempt()
    assert any("glacier" in m for m in bar.get_messages(Qgis.Critical))

    # a model for other classes: the palette follows it and the old labels no longer fit
    from sgcad_qgis.engine.config import ClassSchema

    other = ClassSchema(names=("water", "land"), ids=(0, 1), colors=("#0000ff", "#00ff00"), water_class=0)
    dock.model_picker.set_path(str(tiny_model(Path(dock.output.filePath()).parent / "m2.safetensors", other)))
    assert [b.text() for b in dock.labels.palette._group.buttons()] == ["water", "land"]
    assert "are not classes of the model (it knows ['water', 'land'])" in attempt()
    # segmenting with too many ticked SAR bands is refused before anything runs
    dock.sar.set_bands([1, 2])
    assert dock.segment() is False and "reads 1 SAR band(s), but 2 are ticked" in dock.status.text()


def tiny_teacher(path: Path) -> Path:
    from sgcad_qgis.engine.config import ModelMetadata, TeacherConfig, to_dict
    from sgcad_qgis.engine.models import build_model
    from sgcad_qgis.engine.models.checkpoint import save_model

    cfg = TeacherConfig(widths=(4, 8, 8, 8), blocks_per_branch=(1, 1, 1, 1), modules_per_stage=(1, 1, 1, 1))
    meta = ModelMetadata(kind="teacher", model=to_dict(cfg), **plain_preprocessing())
    save_model(path, build_model(cfg), meta)
    return path


def wait_for_run(dock, index: int = 0, timeout_s: float = 240.0):
    """Return the ``index``-th finished run of ``dock``, running a Qt event loop until it exists.

    QGIS keeps processing events while waiting, as it does for a user; the loop ends as soon
    as the run's ``finished`` signal arrives (or at the timeout, which fails the test).
    """
    from qgis.PyQt.QtCore import QEventLoop, QTimer

    runs = dock.finished_runs
    if len(runs) <= index:
        loop = QEventLoop()
        dock.runner.finished.connect(loop.quit)
        QTimer.singleShot(int(timeout_s * 1000), loop.quit)
        while len(runs) <= index and dock.runner.busy():
            loop.exec_()
        dock.runner.finished.disconnect(loop.quit)
    assert len(runs) > index, f"run {index} did not finish within {timeout_s} s"
    return runs[index]


def test_segment_runs_in_background_and_adds_styled_layers(dock, rotterdam, tmp_path, sgcad_provider):
    dock.teacher.setFilePath(str(tiny_teacher(tmp_path / "teacher.safetensors")))
    dock.area.set_mode("canvas")
    assert dock.segment() is True
    assert dock.runner.busy() and not dock.segment_button.isEnabled() and dock.cancel_button.isEnabled()
    alg, ok, results, error, canceled = wait_for_run(dock)
    assert (alg, ok, error, canceled) == ("sgcad:segment", True, "", False), error
    group = QgsProject.instance().layerTreeRoot().findGroup(dock.segment_group)
    assert group is not None and group.name().startswith("SGCAD Segmentation ")
    names = [(node.layer().name(), node.isVisible()) for node in group.findLayers()]
    # the class map first and visible; gates, confidence and water probability added but hidden
    assert names[0] == ("Land cover (student)", True) and ("Teacher gate: confident water", False) in names
    assert all(not visible for _, visible in names[1:]) and len(names) == 6
    classes = QgsProject.instance().mapLayer(dock.segment_layers["classes"])
    assert classes.renderer().type() == "paletted"
    assert [c.label for c in classes.renderer().classes()][:2] == ["0 farmland", "1 city"]
    # the result stays in the dock with the inputs' warnings under it (the 200 x 200 Rotterdam
    # sample is a small clip)
    status = dock.status.text()
    assert "layer(s) in group" in status and "Warning: optical rgb_unmasked.tif is a small clip" in status, status
    # the run's explanation (engine.explain; its numbers are checked in tests/engine/test_explain.py)
    text = dock.explanation.toPlainText()
    assert text and text == results["EXPLANATION"] and "%" in text, text
    shot(dock, "dock_after_segment")

    # a click on the map explains the tile around it, with the same engine (sgcad:explain)
    assert dock.explain_tile_button.isEnabled()
    dock.explain_tile_button.click()
    assert dock.canvas.mapTool() is dock.tile_tool
    ext = QgsRasterLayer(results["CLASSES"], "c").extent()
    at = QPoint(*canvas_pixel(dock.canvas, ext.center().x(), ext.center().y()))
    QTest.mousePress(dock.canvas.viewport(), Qt.LeftButton, Qt.NoModifier, at)
    QTest.mouseRelease(dock.canvas.viewport(), Qt.LeftButton, Qt.NoModifier, at)
    assert dock.canvas.mapTool() is not dock.tile_tool
    alg, ok, tile, error, canceled = wait_for_run(dock, 1)
    assert (alg, ok, error) == ("sgcad:explain", True, ""), error
    assert dock.explanation.toPlainText().startswith("Tile ") and tile["TEXT"] in dock.explanation.toPlainText()
    assert Path(tile["OUTPUT_JSON"]).name == "explanation_window.json"
    # outside the class map: a clear message, nothing started
    assert dock.explain_tile(QgsPointXY(ext.xMaximum() + 10 * ext.width(), ext.yMaximum())) is False
    assert "outside the last segmentation" in dock.status.text()


def test_flip_averaging_is_one_tick_away(dock, rotterdam, sgcad_provider, monkeypatch):
    started = []
    monkeypatch.setattr(dock, "_start", lambda alg, params, pending: started.append(params) or True)
    dock.area.set_mode("canvas")
    assert dock.segment() and started[-1]["FLIP_AVERAGE"] is False  # off by default: 4x the time
    dock.flip_average.setChecked(True)
    assert dock.segment() and started[-1]["FLIP_AVERAGE"] is True


def test_rectangle_area_and_cancel(dock, rotterdam, sgcad_provider):
    canvas = dock.canvas
    dock.area.set_mode("drawn")
    assert dock.segment() is False and "Draw rectangle" in dock.status.text()
    dock.area.draw_button.click()
    assert canvas.mapTool() is dock.area.tool
    ext = rotterdam["optical"].extent()
    start = canvas_pixel(canvas, ext.xMinimum() + 0.25 * ext.width(), ext.yMinimum() + 0.75 * ext.height())
    end = canvas_pixel(canvas, ext.xMinimum() + 0.5 * ext.width(), ext.yMinimum() + 0.5 * ext.height())
    QTest.mousePress(canvas.viewport(), Qt.LeftButton, Qt.NoModifier, QPoint(*start))
    QTest.mouseMove(canvas.viewport(), QPoint(*end))
    QTest.mouseRelease(canvas.viewport(), Qt.LeftButton, Qt.NoModifier, QPoint(*end))
    rect, crs = dock.area.area()
    assert crs == rotterdam["optical"].crs() and canvas.mapTool() is not dock.area.tool
    tol = canvas.mapUnitsPerPixel() * 1.5
    assert abs(rect.width() - 0.25 * ext.width()) < tol and abs(rect.height() - 0.25 * ext.height()) < tol

    # Cancel right away: the run reports 'canceled' and no layer group appears
    groups_before = len(QgsProject.instance().layerTreeRoot().findGroups())
    assert dock.segment() is True
    dock.cancel_button.click()
    alg, ok, results, error, canceled = wait_for_run(dock, 0)
    assert canceled and not ok
    assert "canceled; no layer was changed" in dock.status.text()
    assert len(QgsProject.instance().layerTreeRoot().findGroups()) == groups_before
    assert dock.segment_button.isEnabled() and not dock.cancel_button.isEnabled()

    # the same rectangle, run to the end: the class map covers the rectangle, not the scene
    assert dock.segment() is True
    alg, ok, results, error, canceled = wait_for_run(dock, 1)
    assert ok, error
    classes = QgsRasterLayer(results["CLASSES"], "c")
    got = classes.extent()
    assert got.width() < 0.6 * ext.width() and got.height() < 0.6 * ext.height()
    assert got.intersects(rect)
    del classes


def test_kd_chart_draws_each_series_in_its_colour():
    from qgis.PyQt.QtGui import QColor

    from sgcad_qgis.gui.chart import SERIES_COLORS, RatioChart

    chart = RatioChart()
    chart.resize(360, 220)
    with pytest.raises(ValueError, match="3 values for 2 epochs"):
        chart.set_series([1, 2], {"all": [0.1, 0.2, 0.3]})

    def pixels_of(color: str) -> int:
        image = chart.grab().toImage()
        want = QColor(color)
        return sum(
            1 for y in range(0, image.height(), 2) for x in range(0, image.width(), 2)
            if abs(QColor(image.pixel(x, y)).red() - want.red()) < 30
            and abs(QColor(image.pixel(x, y)).green() - want.green()) < 30
            and abs(QColor(image.pixel(x, y)).blue() - want.blue()) < 30
        )

    assert pixels_of(SERIES_COLORS["water"]) == 0  # empty chart: a sentence, no lines
    chart.set_series([11, 12, 13, 14], {"all": [0.31, 0.42, 0.47, 0.5], "water": [0.05, 0.08, 0.1, 0.11],
                                        "non-water": [0.26, 0.34, 0.37, 0.39]})
    assert pixels_of(SERIES_COLORS["water"]) > 40 and pixels_of(SERIES_COLORS["non-water"]) > 40
    shot(chart, "kd_chart")


def test_plugin_opens_the_dock_once_and_removes_it_on_unload(recording_iface, qgis_new_project):
    from sgcad_qgis.gui.dock import BUNDLED_MODELS, SgcadDock
    from sgcad_qgis.plugin import SgcadPlugin

    plugin = SgcadPlugin(recording_iface)  # the menu action's slot; the action is tested in test_plugin_load
    plugin.show_dock()
    plugin.show_dock()
    assert isinstance(plugin.dock, SgcadDock) and recording_iface.docks == [plugin.dock]
    assert BUNDLED_MODELS.parent.name == "resources" and BUNDLED_MODELS.parent.is_dir()
    plugin.unload()
    assert recording_iface.docks == [] and plugin.dock is None


def test_geopackage_label_layer_keeps_drawn_polygons_on_disk(dock, rotterdam, tmp_path):
    from qgis.core import QgsVectorLayer

    path = tmp_path / "my_labels.gpkg"
    layer = dock.labels.create_layer(path)
    assert layer is not None and layer.providerType() == "ogr"
    assert dock.labels.create_layer(path) is None and "already exists" in dock.status.text()
    dock.labels.palette.set_class("road")
    dock.labels.draw_button.click()
    ext = rotterdam["optical"].extent()
    corners = [(ext.xMinimum() + ext.width() * fx, ext.yMinimum() + ext.height() * fy)
               for fx, fy in ((0.4, 0.4), (0.6, 0.4), (0.5, 0.6))]
    draw(dock.canvas, [canvas_pixel(dock.canvas, x, y) for x, y in corners])
    reopened = QgsVectorLayer(f"{path}|layername=labels", "check", "ogr")
    assert [f["class"] for f in reopened.getFeatures()] == ["road"]
    del reopened


def test_kd_series_reads_the_engines_epoch_log_and_skips_warmup(tmp_path):
    from sgcad_qgis.engine.train.report import EpochLog

    from sgcad_qgis.gui.wiring import kd_series

    log = EpochLog(tmp_path, ["water", "land"])
    log.append({"epoch": 1, "train_loss": 0.9, "train_kd_ratio": None})  # warm-up: no distillation
    for epoch, (w, n) in enumerate(((0.10, 0.30), (0.12, 0.33)), start=2):
        log.append({"epoch": epoch, "train_kd_ratio": w + n, "train_kd_ratio_water": w,
                    "train_kd_ratio_non_water": n})
    epochs, series = kd_series({"OUTPUT_FOLDER": str(tmp_path)})
    assert epochs == [2, 3]
    assert series["all"] == pytest.approx([0.40, 0.45]) and series["water"] == pytest.approx([0.10, 0.12])
    assert kd_series({"OUTPUT_FOLDER": str(tmp_path / "missing")}) == ([], {})


def test_input_warnings_reach_the_dock(dock, rotterdam, tmp_path, sgcad_provider):
    """A constant optical band: the run still maps, and the dock says what is wrong with numbers."""
    with rasterio.open(rotterdam["folder"] / "rgb_unmasked.tif") as src:
        profile, data = src.profile, src.read()
    data[2] = 0
    path = rotterdam["folder"] / "blue_zero.tif"
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    layer = QgsRasterLayer(str(path), "blue_zero")
    QgsProject.instance().addMapLayer(layer)
    dock.optical.set_layer(layer, [1, 2, 3])
    dock.teacher.setFilePath("")
    assert dock.segment() is True
    alg, ok, results, error, canceled = wait_for_run(dock)
    assert ok, error
    assert "optical band 3 of blue_zero.tif holds only zeros" in results["WARNINGS"]
    assert "holds only zeros" in dock.status.text()  # the dock's message (also pushed to QGIS's bar)
