"""The SGCAD dock, driven like a user: pick layers, draw labels with the mouse, read messages.

Screenshots of the dock's main states are written to ``build/gui_screenshots`` (and the ones
used by docs/gui.md are copied from there by hand after looking at them).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from qgis.core import Qgis, QgsProject, QgsRasterLayer, QgsRectangle
from qgis.PyQt.QtCore import QPoint, Qt
from qgis.PyQt.QtTest import QTest

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "build" / "gui_screenshots"

pytestmark = pytest.mark.gui


def tiny_model(path: Path, schema=None) -> Path:
    """A real (untrained) student checkpoint, small enough to build in milliseconds."""
    from sgcad_qgis.engine.config import ClassSchema, ModelMetadata, StudentConfig, to_dict
    from sgcad_qgis.engine.models import build_model
    from sgcad_qgis.engine.train.checkpoint import save_model

    schema = schema or ClassSchema()
    cfg = StudentConfig(widths=(8, 8, 8, 8), blocks_per_stage=(1, 1, 1, 1), attention_dim=8,
                        decoder_channels=8, num_classes=schema.num_classes)
    save_model(path, build_model(cfg), ModelMetadata(model=to_dict(cfg), schema=schema))
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
def dock(rotterdam, recording_iface, tmp_path):
    from sgcad_qgis.gui.dock import SgcadDock

    widget = SgcadDock(recording_iface)
    widget.model_picker.set_path(str(tiny_model(tmp_path / "student.safetensors")))
    widget.output.setFilePath(str(tmp_path / "runs"))
    widget.resize(400, 1000)
    widget.show()
    yield widget
    widget.canvas.unsetMapTool(widget.labels.tool)
    widget.close()
    widget.deleteLater()


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
    dock.sar.set_bands([2])
    assert dock.sar.selected_bands() == [2]
    shot(dock, "dock_segment")


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
