"""The product's own outputs read back, and results that must not pass as numbers (qgis_process sweep A5, A7,
A9, A17-A20, B3, B6): a water map scored as water / not water, segment's 254 as not water, float rasters refused
as class maps, empty or repaired polygon layers said, learning rate 0 refused, unmeasured classes None, dropped
label polygons named, point and line layers named as such."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import List

import numpy as np
import pytest
import rasterio
from osgeo import ogr, osr

from engine.commands.finetune import summary
from engine.config import FinetuneConfig
from engine.metrics import ConfusionMatrix, on_measured_classes
from engine.progress import CallbackProgress
from engine.raster.grid import grid_of
from engine.raster.io import write_raster
from engine.raster.labels import rasterize_labels, read_label_polygons
from engine.train.evaluate import evaluate_rasters
from engine.validate import check_learning_rate
from engine.vector.polygonize import vectorize_classes

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"
LABEL = DATA / "sen1floods11_s1" / "India_900498_LabelHand.tif"  # -1 no data, 0 not water, 1 water
ROTTERDAM = ROOT / "resources" / "sample" / "rotterdam"
SYNTHETIC_LABEL = ROOT / "resources" / "sample" / "synthetic" / "label.tif"

pytestmark = pytest.mark.skipif(not LABEL.exists(), reason="Sen1Floods11 chip not available")


def _recorder() -> tuple:
    warnings: List[str] = []
    return CallbackProgress(warning=warnings.append), warnings


def _india_label() -> np.ndarray:
    with rasterio.open(LABEL) as src:
        return src.read(1)


def _six_class_reference(tmp_path: Path) -> Path:
    """The chip's label in the six-class schema: water 3, not water 0 (farmland), no data 255."""
    a = _india_label()
    ref = np.where(a < 0, 255, np.where(a == 1, 3, 0)).astype(np.uint8)
    return write_raster(tmp_path / "ref6.tif", ref, grid_of(LABEL), nodata=255)


def _water_map(tmp_path: Path, water: np.ndarray) -> Path:
    """A water map as watermap writes it: uint8, band "water", 0/1, 255 no SAR, no class names."""
    return write_raster(tmp_path / "water.tif", water.astype(np.uint8), grid_of(LABEL), nodata=255,
                        band_names=["water"])


# -- A5: the water map is scored as water / not water -------------------------------------------------------------
def test_water_map_scored_as_water_not_as_six_classes(tmp_path):
    a = _india_label()
    truth = a == 1
    water = truth.copy()
    water[:, :100] = ~water[:, :100]  # a wrong strip, so the IoU is not trivially 1
    ref = _six_class_reference(tmp_path)
    progress, warnings = _recorder()
    result = evaluate_rasters(_water_map(tmp_path, water), ref, progress=progress)
    labelled = a >= 0
    tp = (water & truth & labelled).sum()
    expected = tp / ((water | truth) & labelled).sum()
    assert result["scored_as"] == "water / not water"
    assert result["class_names"] == ["not water", "water"]
    assert result["water_iou"] == pytest.approx(expected, abs=1e-9)
    assert 0.3 < result["water_iou"] < 0.95  # a real figure, not the 0.0 of "1 = city"
    assert result["pixels"] == int(labelled.sum())
    assert len(result["matrix"]) == 2
    assert any("water map" in w for w in warnings)


def test_water_map_reference_folds_a_class_map(tmp_path):
    """A class map scored against a water map reference (band "water"): the class map's water against the rest."""
    a = _india_label()
    ref = _water_map(tmp_path, np.where(a < 0, 255, a == 1))
    classes = np.where(a == 1, 3, 4).astype(np.uint8)  # water where the label says so, forest elsewhere
    pred = write_raster(tmp_path / "classes.tif", classes, grid_of(LABEL), nodata=255, band_names=["class"])
    result = evaluate_rasters(pred, ref)
    assert result["water_iou"] == pytest.approx(1.0)
    assert result["oa"] == pytest.approx(1.0)


# -- A9: segment's 254 is not water, land class unknown -------------------------------------------------------------
def test_sar_only_non_water_counted_as_not_water_and_left_out_of_land_classes(tmp_path):
    a = _india_label()
    classes = np.where(a == 1, 3, 0).astype(np.uint8)
    classes[:128, :] = np.where(a[:128, :] == 1, 254, 0)  # 254 on water: misses; on land it would be right
    classes[128:256, :] = np.where(a[128:256, :] == 1, 3, 254)  # 254 on land: right for water, unknown land class
    pred = write_raster(tmp_path / "classes.tif", classes, grid_of(LABEL), nodata=255, band_names=["class"])
    progress, warnings = _recorder()
    result = evaluate_rasters(pred, _six_class_reference(tmp_path), progress=progress)
    labelled = a >= 0
    truth, said = (a == 1) & labelled, (classes == 3) & labelled
    assert result["water_iou"] == pytest.approx((truth & said).sum() / (truth | said).sum())
    sar_only = (classes == 254) & labelled
    assert result["sar_only_non_water_pixels"] == int(sar_only.sum())
    assert result["pixels"] == int((labelled & ~sar_only).sum())  # per-class scores leave 254 out
    assert result["water_pixels"] == int(labelled.sum())
    assert result["iou"][0] == pytest.approx(1.0)  # farmland where predicted, never mixed with 254
    assert sum("254" in w and "not water" in w for w in warnings) == 1


# -- A7, A19: vectorize refuses what cannot be a class map or a confidence; says why a layer is empty ---------------
def test_vectorize_refuses_a_float_raster(tmp_path):
    values = np.full((64, 64), 2.5, np.float32)
    values[:32] = 0.7
    src = write_raster(tmp_path / "float.tif", values, grid_of(SYNTHETIC_LABEL).window_grid(
        rasterio.windows.Window(0, 0, 64, 64)))
    with pytest.raises(ValueError, match=r"expected an integer class raster .*got float32"):
        vectorize_classes(src, tmp_path / "out.gpkg")
    assert not (tmp_path / "out.gpkg").exists()


def test_vectorize_refuses_a_class_map_as_confidence(tmp_path):
    with pytest.raises(ValueError, match=r"expected a float confidence raster .*got uint8"):
        vectorize_classes(SYNTHETIC_LABEL, tmp_path / "out.gpkg", confidence_path=SYNTHETIC_LABEL)


def test_vectorize_empty_layer_is_said(tmp_path):
    grid = grid_of(SYNTHETIC_LABEL).window_grid(rasterio.windows.Window(0, 0, 64, 64))
    empty = write_raster(tmp_path / "all255.tif", np.full((64, 64), 255, np.uint8), grid, nodata=255)
    progress, warnings = _recorder()
    result = vectorize_classes(empty, tmp_path / "a.gpkg", progress=progress)
    assert result["polygons"] == 0
    assert warnings == ["all255.tif holds no pixel outside nodata: the polygon layer is empty"]

    progress, warnings = _recorder()
    result = vectorize_classes(SYNTHETIC_LABEL, tmp_path / "b.gpkg", min_area=1e12, progress=progress)
    assert result["polygons"] == 0 and result["dropped"]["below_min_area"] == result["components"] > 0
    assert len(warnings) == 1 and "smaller than the minimum area 1e+12 m²" in warnings[0]
    assert f"the largest is {result['largest_area_m2']:g} m²" in warnings[0]


def test_vectorize_repairs_what_a_coarse_simplification_breaks(tmp_path, capfd):
    a = _india_label()  # the chip's water as a 0/1 class map: its ragged shores fold when simplified coarsely
    classes = write_raster(tmp_path / "india.tif", np.where(a < 0, 255, a).astype(np.uint8), grid_of(LABEL),
                           nodata=255)
    progress, warnings = _recorder()
    result = vectorize_classes(classes, tmp_path / "s.gpkg", simplify=400.0, progress=progress)
    ds = ogr.Open(str(tmp_path / "s.gpkg"))
    layer = ds.GetLayer(0)
    invalid = sum(not f.GetGeometryRef().IsValid() for f in layer)
    assert result["repaired"] > 0
    assert invalid == 0
    assert layer.GetFeatureCount() == result["polygons"]
    assert any(f"{result['repaired']} polygon(s) became invalid" in w and "make-valid" in w for w in warnings)
    assert "Warning 1" not in capfd.readouterr().err


# -- A17: learning rate 0 is refused before any work ------------------------------------------------------------------
@pytest.mark.parametrize("lr", [0.0, -1e-4, float("nan")])
def test_learning_rate_must_be_positive(lr, tmp_path):
    with pytest.raises(ValueError, match=r"must be more than 0 .*cannot learn"):
        check_learning_rate(lr)
    from engine.train.finetune import finetune_from_polygons

    with pytest.raises(ValueError, match="learning rate"):  # before any file is read
        finetune_from_polygons(tmp_path / "missing_rgb.tif", tmp_path / "missing_sar.tif", tmp_path / "missing.gpkg",
                               "class", tmp_path / "missing.safetensors", tmp_path / "out",
                               cfg=FinetuneConfig(lr=lr))
    assert not (tmp_path / "out").exists()
    check_learning_rate(3e-4)


# -- A18: what the held-out polygons do not hold is unmeasured, and means use the same classes ---------------------
def test_unmeasured_classes_are_none_and_means_use_the_same_classes():
    from engine.train.finetune import _score

    label = np.full((10, 10), 255, np.int64)
    label[:5] = 1  # the held-out polygons hold city only
    baseline_pred = np.where(np.arange(10)[None, :] < 5, 1, 3).repeat(10, 0)  # half city, half "water"
    tuned_pred = np.ones((10, 10), np.int64)
    tiles = [SimpleNamespace(label=label)]
    baseline = _score(tiles, lambda t: baseline_pred, 6)
    tuned = _score(tiles, lambda t: tuned_pred, 6)
    assert baseline["iou"][3] is None  # was 0.0: false alarms only, water not measured
    assert baseline["unmeasured"] == [0, 2, 3, 4, 5] == tuned["unmeasured"]
    assert baseline["miou"] == pytest.approx(0.5)  # city only, for both
    assert tuned["miou"] == pytest.approx(1.0)
    raw = ConfusionMatrix(6)
    raw.update(baseline_pred, label)
    assert raw.compute()["iou"][3] == 0.0 and on_measured_classes(raw.compute())["iou"][3] is None

    result = {"validation": tuned, "baseline": {"student": baseline, "teacher": _score(
        [SimpleNamespace(label=np.where(label == 255, 255, 0))], lambda t: (baseline_pred == 3).astype(np.int64), 2)},
        "teacher_validation": None, "water_class": 3, "classes": ["farmland", "city", "village", "water", "forest",
                                                                   "road"]}
    figures = summary(result)
    for column in ("student", "student_baseline", "teacher_baseline"):
        assert figures[column]["water_iou"] is None
        assert "hold no water" in figures[column]["not_measured"]
    assert figures["student"]["miou_classes"] == figures["student_baseline"]["miou_classes"] == ["city"]


# -- A20, B3, B6: label polygons that are skipped, points, lines, an empty layer ------------------------------------
def _layer(path: Path, features, geom_type=ogr.wkbPolygon) -> Path:
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32631)
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    layer = ds.CreateLayer("labels", srs=srs, geom_type=geom_type)
    layer.CreateField(ogr.FieldDefn("class", ogr.OFTString))
    for cls, wkt in features:
        f = ogr.Feature(layer.GetLayerDefn())
        f.SetField("class", cls)
        f.SetGeometry(ogr.CreateGeometryFromWkt(wkt))
        layer.CreateFeature(f)
    ds = None  # noqa: F841
    return path


def test_invalid_label_polygons_are_named_and_repaired(tmp_path, capfd):
    path = _layer(tmp_path / "degenerate.gpkg", [
        ("water", "POLYGON ((592500 5749500,592600 5749500,592500 5749500))"),  # too few points: no area
        ("city", "POLYGON ((592400 5749400,592700 5749700,592700 5749400,592400 5749700,592400 5749400))"),  # bow tie
    ])
    grid = grid_of(ROTTERDAM / "sar_masked.tif")
    progress, warnings = _recorder()
    by_class, report = read_label_polygons(path, "class", grid, _schema(), progress=progress)
    assert list(by_class) == [1] and report["repaired"] == [2]
    assert [(s["fid"], s["class"]) for s in report["skipped"]] == [(1, "water")]
    assert len(warnings) == 1
    assert "1 of 2 polygon(s) skipped: fid 1 (water) is invalid and has no area" in warnings[0]
    assert "repaired with make-valid: fid 2" in warnings[0]
    assert "Warning 1" not in capfd.readouterr().err  # GEOS's raw lines stay off the console


@pytest.mark.parametrize("kind,geom_type,wkt", [
    ("points", ogr.wkbPoint, "POINT (592500 5749500)"),
    ("lines", ogr.wkbLineString, "LINESTRING (592400 5749400,592700 5749700)"),
])
def test_points_or_lines_are_named_not_blamed_on_overlap(tmp_path, kind, geom_type, wkt):
    path = _layer(tmp_path / f"{kind}.gpkg", [("city", wkt), ("water", wkt)], geom_type)
    grid = grid_of(ROTTERDAM / "sar_masked.tif")
    with pytest.raises(ValueError, match=rf"holds {kind}; polygons are expected"):
        rasterize_labels(path, "class", grid, _schema())
    with pytest.raises(ValueError, match=rf"holds {kind}; polygons are expected"):
        evaluate_rasters(_six_class_reference(tmp_path), path, class_field="class")


def test_non_polygons_in_a_mixed_layer_are_named(tmp_path):
    path = _layer(tmp_path / "mixed.gpkg", [("city", "POINT (592500 5749500)")], ogr.wkbUnknown)
    with pytest.raises(ValueError, match="holds points; polygons are expected"):
        read_label_polygons(path, "class", grid_of(ROTTERDAM / "sar_masked.tif"), _schema())


def test_empty_layer_says_so(tmp_path):
    path = _layer(tmp_path / "empty.gpkg", [])
    with pytest.raises(ValueError, match="holds no features"):
        read_label_polygons(path, "class", grid_of(ROTTERDAM / "sar_masked.tif"), _schema())


def _schema():
    from engine.config import ClassSchema

    return ClassSchema()


def test_a_vectorized_water_map_names_its_two_classes(tmp_path):
    # before: "class 0" / "class 1"
    water = _water_map(tmp_path, (_india_label() == 1).astype(np.uint8))
    result = vectorize_classes(water, tmp_path / "w.gpkg")
    ds = ogr.Open(str(tmp_path / "w.gpkg"))
    names = {f.GetField("class_name") for f in ds.GetLayer(0)}
    ds = None
    assert result["polygons"] > 0 and names == {"not water", "water"}


def test_a_file_standing_where_an_output_folder_should_be_is_named(tmp_path):
    """Before: "file or folder not found" (QGIS creating the folder), or "output folder does not exist"."""
    import errno

    from engine.raster.io import check_output
    from engine.validate import SgcadError, check_output_folder, describe_os_error

    blocker = tmp_path / "notes.txt"
    blocker.write_text("a user's file")
    wanted = blocker / "maps" / "classes.tif"
    expected = f"{blocker} is a file, not a folder"
    with pytest.raises(ValueError, match=expected):
        check_output(wanted)
    with pytest.raises(SgcadError, match=expected):
        check_output_folder(wanted.parent)
    line = describe_os_error(NotADirectoryError(errno.ENOTDIR, "Not a directory", str(wanted.parent)))
    assert expected in line and "choose another path" in line, line
    missing = tmp_path / "nowhere" / "maps"  # a folder that is simply missing is still said so
    assert "file or folder not found" in describe_os_error(FileNotFoundError(errno.ENOENT, "No such file",
                                                                             str(missing)))
    assert blocker.read_text() == "a user's file"


def test_a_dangling_link_as_output_folder_names_its_target_and_align_leaves_no_empty_folder(tmp_path, capsys):
    from engine.cli import main

    root = Path(__file__).resolve().parents[2] / "resources" / "sample" / "rotterdam"
    link = tmp_path / "maps"
    link.symlink_to(tmp_path / "gone")
    code = main(["water", "--sar", str(root / "sar_masked.tif"), "--out", str(link)])
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and line == (f"error: {link}: a link to {tmp_path / 'gone'}, which does not exist; create that "
                                  "folder or choose another output folder"), line  # before: "input/output error"
    bare = tmp_path / "bare.tif"  # no georeferencing: align refuses it
    with rasterio.open(root / "sar_masked.tif") as src:
        profile, data = src.profile, src.read()
    profile.pop("crs")
    with rasterio.open(bare, "w", **dict(profile, transform=rasterio.Affine(1, 0, 0, 0, 1, 0))) as dst:
        dst.write(data)
    assert main(["align", "--optical", str(bare), "--sar", str(root / "sar_masked.tif"),
                 "--out", str(tmp_path / "aligned" / "pair")]) == 2
    assert not (tmp_path / "aligned").exists()  # before: an empty folder was left
