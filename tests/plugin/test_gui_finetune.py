"""Fine-tuning from polygons drawn with the mouse, end to end through ``sgcad:finetune``.

A seeded synthetic scene is loaded, segmented, labelled with two polygons drawn through the
dock's map tool, fine-tuned for four steps, and the test checks that the weights changed, the
gate and KD-ratio layers appeared, the class map was refreshed in place and that going back
to the previous model works.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from qgis.core import QgsProject, QgsRasterLayer

# helpers and the ``make_dock`` fixture are shared with the dock's other tests (same folder)
from test_gui_dock import canvas_pixel, draw, make_dock, shot, tiny_teacher, wait_for_run  # noqa: F401

pytestmark = pytest.mark.gui


@pytest.fixture()
def synthetic(tmp_path, qgis_new_project, qgis_iface):
    """A seeded synthetic scene (optical, SAR, label raster) loaded as layers."""
    import rasterio
    from sgcad_qgis.engine.data.synthetic import generate_scene

    scene = generate_scene(tmp_path / "scene", size=192, seed=5, write_vector=False)
    with rasterio.open(scene["label"]) as ds:
        label, transform = ds.read(1), ds.transform
    optical = QgsRasterLayer(scene["optical"], "optical")
    sar = QgsRasterLayer(scene["sar"], "sar")
    QgsProject.instance().addMapLayers([optical, sar])
    canvas = qgis_iface.mapCanvas()
    canvas.setDestinationCrs(optical.crs())
    canvas.setLayers([optical])
    canvas.setExtent(optical.extent())
    canvas.refresh()

    def pure_square(class_id: int, size: int = 16):
        """Map corners of a size x size block of pixels that all hold ``class_id``."""
        for row in range(0, label.shape[0] - size, 4):
            for col in range(0, label.shape[1] - size, 4):
                if np.all(label[row:row + size, col:col + size] == class_id):
                    x0, y0 = transform * (col + 1, row + size - 1)
                    x1, y1 = transform * (col + size - 1, row + 1)
                    return x0, y0, x1, y1
        raise AssertionError(f"no pure block of class {class_id}")

    yield {"optical": optical, "sar": sar, "square": pure_square, "scene": scene}
    canvas.setLayers([])


def test_finetune_from_drawn_polygons_updates_model_layers_and_chart(make_dock, synthetic,  # noqa: F811
                                                                     tmp_path, sgcad_provider):
    from safetensors.numpy import load_file

    dock = make_dock()
    student = str(tmp_path / "student.safetensors")
    dock.teacher.setFilePath(str(tiny_teacher(tmp_path / "teacher.safetensors")))
    assert dock.optical.layer().name() == "optical" and dock.sar.layer().name() == "sar"

    # segment first: the fine-tune must later refresh these very layers
    assert dock.segment() is True
    assert wait_for_run(dock, 0)[1]
    first_group = dock.segment_group
    classes_id = dock.segment_layers["classes"]
    first_source = QgsProject.instance().mapLayer(classes_id).source()

    dock.show_tab(1)
    dock.labels.create_layer(None)
    dock.steps.setValue(4)
    canvas = dock.canvas
    dock.labels.draw_button.click()
    for name, class_id in (("water", 3), ("city", 1)):
        x0, y0, x1, y1 = synthetic["square"](class_id)
        dock.labels.palette.set_class(name)
        draw(canvas, [canvas_pixel(canvas, x, y) for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1))])
    assert dock.labels.class_counts() == {"water": 1, "city": 1}
    shot(dock, "dock_finetune_ready")

    assert dock.finetune() is True, dock.status.text()
    alg, ok, results, error, canceled = wait_for_run(dock, 1, timeout_s=300)
    assert (alg, ok, error) == ("sgcad:finetune", True, ""), error
    new_model = dock.model_picker.current_path()
    assert new_model != student and Path(new_model).is_file()
    before, after = load_file(student), load_file(new_model)
    assert before.keys() == after.keys()
    assert any(not np.array_equal(before[k], after[k]) for k in before)  # training changed weights
    assert [e.path for e in dock.history.entries][-2:] == [student, new_model]
    assert Path(results["OUTPUT_FOLDER"], "labels.gpkg").is_file()
    # one square per class: nothing can be held out, and the dock says so instead of a number
    assert results["MEASURED"] == 0 and "unmeasured" in dock.held_out.text()

    # KD chart and gate / ratio layers
    assert dock.tabs.currentIndex() == 2 and dock.chart.epochs
    fine_groups = [g for g in QgsProject.instance().layerTreeRoot().findGroups()
                   if g.name().startswith("SGCAD Fine-tune")]
    assert len(fine_groups) == 1
    shown = {(node.layer().name(), node.isVisible()) for node in fine_groups[0].findLayers()}
    assert shown == {("KD gates (reliable water / non-water)", False),
                     ("KD region ratio (share of gated pixels per block)", False)}  # added, never covering the map
    assert dock.progress.value() < 100  # one bar for the job: the re-segmentation is still to come
    shot(dock, "dock_gates")

    # the re-segmentation with the new model refreshes the same layers in place
    alg, ok, results, error, canceled = wait_for_run(dock, 2)
    assert (alg, ok) == ("sgcad:segment", True), error
    assert dock.progress.value() == 100
    assert dock.segment_layers["classes"] == classes_id
    classes = QgsProject.instance().mapLayer(classes_id)
    assert classes.source() != first_source and classes.isValid()
    root = QgsProject.instance().layerTreeRoot()
    assert dock.segment_group != first_group and root.findGroup(first_group) is None

    # back to the previous model: selected again, the map re-segmented with it, files kept
    dock.back_to_previous_model()
    assert dock.model_picker.current_path() == student and Path(new_model).is_file()
    assert wait_for_run(dock, 3)[1]
    assert not dock.back_button.isEnabled() or dock.history.can_go_back()
