"""Labels from polygons, split-first-crop-later patches and the patch dataset."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from osgeo import ogr, osr

from engine.config import ClassSchema, PatchConfig
from engine.data.augment import AugmentConfig, augment
from engine.data.dataset import PatchDataset
from engine.data.patches import build_manifest, load_manifest, save_manifest, windows_overlap
from engine.data.synthetic import generate_scene
from engine.inputs.contract import InputRecipe, resolve_inputs
from engine.raster.grid import Grid, grid_of
from engine.raster.labels import rasterize_labels

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return generate_scene(tmp_path_factory.mktemp("scene"), size=384, seed=5)


def _write_polygons(path: Path, epsg: int, polygons, field_type=ogr.OFTString):
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    layer = ds.CreateLayer("labels", srs, ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("cls", field_type))
    for value, wkt in polygons:
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetField("cls", value)
        feature.SetGeometry(ogr.CreateGeometryFromWkt(wkt))
        layer.CreateFeature(feature)
    del ds


def _box(x0, y0, x1, y1):
    return f"POLYGON(({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0}))"


def test_synthetic_polygons_rasterise_back_to_the_label_raster_exactly(scene):
    grid = grid_of(scene["label"])
    label, report = rasterize_labels(scene["label_vector"], "class_name", grid, ClassSchema())
    with rasterio.open(scene["label"]) as src:
        reference = src.read(1)
    assert np.array_equal(label, reference)
    assert report["conflict_pixels"] == 0 and report["skipped"] == []


def test_overlapping_classes_become_ignored_and_bad_geometries_are_reported(tmp_path):
    from rasterio.transform import from_origin

    grid = Grid(rasterio.crs.CRS.from_epsg(32631).to_wkt(), from_origin(500000, 5000100, 1, 1), 100, 100)
    bowtie = "POLYGON((500060 5000060,500080 5000080,500080 5000060,500060 5000080,500060 5000060))"
    path = tmp_path / "labels.gpkg"
    _write_polygons(path, 32631, [
        ("water", _box(500000, 5000050, 500040, 5000100)),  # rows 0-49, cols 0-39
        ("3", _box(500030, 5000050, 500050, 5000100)),  # same class overlapping: fine
        ("forest", _box(500045, 5000050, 500055, 5000100)),  # overlaps water cols 45-49
        ("city", bowtie),  # self-intersecting: repaired by MakeValid
        ("road", "POLYGON EMPTY"),
    ])
    label, report = rasterize_labels(path, "cls", grid, ClassSchema())
    assert (label[:50, :45] == 3).all()
    assert (label[:50, 45:50] == 255).all() and report["conflict_pixels"] == 50 * 5
    assert (label[:50, 50:55] == 4).all()
    assert report["repaired"] == [4] and report["skipped"][0]["fid"] == 5
    right = label[:, 56:]
    assert (label == 1).sum() == 200 and (right[right != 255] == 1).all()  # the bowtie's two triangles


def test_labels_in_another_crs_and_unknown_class_values(tmp_path):
    from rasterio.transform import from_origin

    grid = Grid(rasterio.crs.CRS.from_epsg(32631).to_wkt(), from_origin(500000, 5000100, 10, 10), 50, 50)
    # The same square in geographic coordinates (EPSG:4326, lon/lat order handled).
    src, dst = osr.SpatialReference(), osr.SpatialReference()
    src.ImportFromEPSG(32631)
    dst.ImportFromEPSG(4326)
    for s in (src, dst):
        s.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    geom = ogr.CreateGeometryFromWkt(_box(500100, 4999700, 500300, 4999900))
    geom.Transform(osr.CoordinateTransformation(src, dst))
    path = tmp_path / "geo.gpkg"
    _write_polygons(path, 4326, [("water", geom.ExportToWkt())])
    label, _ = rasterize_labels(path, "cls", grid, ClassSchema())
    rows, cols = np.nonzero(label == 3)
    assert abs(rows.min() - 20) <= 1 and abs(rows.max() - 39) <= 1
    assert abs(cols.min() - 10) <= 1 and abs(cols.max() - 29) <= 1

    bad = tmp_path / "bad.gpkg"
    _write_polygons(bad, 32631, [("lake", _box(500000, 5000000, 500100, 5000100))])
    with pytest.raises(ValueError, match="not classes of the schema.*'lake'"):
        rasterize_labels(bad, "cls", grid, ClassSchema())
    with pytest.raises(ValueError, match="no field 'klass'"):
        rasterize_labels(bad, "klass", grid, ClassSchema())


def test_splits_are_geometrically_disjoint_and_resampling_is_training_only(scene):
    cfg = PatchConfig(patch_size=64, tile_size=4096, seed=3)
    manifest = build_manifest(scene["label"], cfg)
    assert manifest["tile_size"] < 4096 and manifest["warnings"]
    by_split = {s: [p for p in manifest["patches"] if p["split"] == s] for s in ("train", "val", "test")}
    assert all(by_split.values())
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not any(windows_overlap(p["window"], q["window"]) for p in by_split[a] for q in by_split[b])
    assert all(not p["resampled"] for s in ("val", "test") for p in by_split[s])
    rare = [p for p in by_split["train"] if p["resampled"]]
    assert rare
    road, village, city = 5, 2, 1
    for p in rare:
        assert any(p["class_counts"][c] >= 10 and p["class_counts"][c] >= 0.03 * 64 * 64 for c in (road, village, city))
    with rasterio.open(scene["label"]) as src:
        for p in by_split["val"][:5]:
            c, r, w, h = p["window"]
            window_label = src.read(1, window=((r, r + h), (c, c + w)))
            assert np.bincount(window_label[window_label < 6], minlength=6).tolist() == p["class_counts"]
    # Same seed, same split; another seed, another assignment of tiles.
    again = build_manifest(scene["label"], cfg)
    assert [t["split"] for t in again["tiles"]] == [t["split"] for t in manifest["tiles"]]
    # Stratified: validation and test both hold water (the class that selects the teacher).
    assert all(manifest["summary"][s]["class_pixels"][3] > 0 for s in ("val", "test"))


def test_manifest_round_trip_and_bad_inputs(scene, tmp_path):
    manifest = build_manifest(scene["label"], PatchConfig(patch_size=64))
    path = save_manifest(manifest, tmp_path / "manifest.json")
    assert load_manifest(path) == json.loads(json.dumps(manifest))
    (tmp_path / "junk.json").write_text("{}")
    with pytest.raises(ValueError, match="not a patch manifest"):
        load_manifest(tmp_path / "junk.json")
    with pytest.raises(ValueError, match="smaller than one"):
        build_manifest(scene["label"], PatchConfig(patch_size=1024))


def test_dataset_reads_normalised_patches_with_ignore_where_inputs_are_missing(scene):
    pre = resolve_inputs(InputRecipe(), scene["optical"], scene["sar"]).preprocessor
    manifest = build_manifest(scene["label"], PatchConfig(patch_size=64))
    ds = PatchDataset(scene["optical"], scene["sar"], scene["label"], manifest, "val", pre)
    item = ds[0]
    assert item["optical"].shape == (3, 64, 64) and item["sar"].shape == (1, 64, 64)
    assert item["label"].dtype == torch.int64
    for key in ("optical", "sar"):
        assert torch.isfinite(item[key]).all() and 0 <= item[key].min() and item[key].max() <= 1
    with rasterio.open(scene["label"]) as src:
        c, r, w, h = ds.patches[0]["window"]
        assert np.array_equal(item["label"].numpy(), src.read(1, window=((r, r + h), (c, c + w))))
    # A window reaching outside the rasters: inputs there are 0 and the label ignored.
    data = ds.read(rasterio.windows.Window(-16, -16, 64, 64))
    assert np.isnan(data["sar"][:, :16]).all() and np.isfinite(data["sar"][:, 16:, 16:]).all()


def test_augmentation_moves_optical_sar_and_label_together():
    torch.manual_seed(0)
    base = torch.arange(32 * 32, dtype=torch.float32).reshape(1, 32, 32)
    optical, sar, label = base.repeat(3, 1, 1), base.clone(), base[0].long()
    geometric = dict(sar_shift=0.0, sar_blur_prob=0.0, sar_noise_prob=0.0, optical_jitter_prob=0.0,
                     optical_restretch_prob=0.0)
    cfg = AugmentConfig(rotate_prob=1.0, crop_prob=1.0, max_degrees=10, **geometric)
    seen_ignore = False
    for _ in range(20):
        o, s, lab = augment(optical, sar, label, cfg)
        valid = lab != 255
        seen_ignore |= bool((~valid).any())
        # nearest-neighbour label and bilinear image agree to within one pixel step of the ramp
        assert torch.allclose(o[0], s[0]) and torch.allclose(o[1], s[0])
        # away from the border (where bilinear mixes in padding) values agree within one step
        inner = ~torch.nn.functional.max_pool2d((~valid).float()[None, None], 3, 1, 1)[0, 0].bool()
        assert ((s[0][inner] - lab[inner].float()).abs() <= 33).all()
    assert seen_ignore  # rotation brings in pixels from outside: they are ignored


def test_photometric_augmentation_shifts_blurs_and_stays_in_range():
    torch.manual_seed(1)
    rng = torch.Generator().manual_seed(0)
    sar = (0.4 + 0.1 * torch.rand(1, 64, 64, generator=rng))
    optical = torch.rand(3, 64, 64, generator=rng)
    label = torch.zeros(64, 64, dtype=torch.long)
    cfg = AugmentConfig(flip=0.0, rot90=False, rotate_prob=0.0, crop_prob=0.0, sar_blur_prob=1.0, sar_noise_prob=0.0)
    shifts, spreads = [], []
    for _ in range(30):
        o, s, lab = augment(optical, sar, label, cfg)
        assert torch.equal(lab, label) and 0 <= float(s.min()) and float(s.max()) <= 1 and 0 <= float(o.min())
        shifts.append(float(s.mean() - sar.mean()))
        spreads.append(float(s.std()))
    # a level shift of at most ~2 dB (0.045 of the 45 dB range), both ways; blur lowers the speckle
    assert max(abs(x) for x in shifts) <= 0.046 and min(shifts) < 0 < max(shifts)
    assert max(spreads) < float(sar.std())


def test_data_commands_run_as_written(tmp_path):
    out = subprocess.run([sys.executable, "-m", "engine", "synth", "--size", "512", "--seed", "1", "--out",
                          str(tmp_path / "s"), "--json"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["size"] == 512 and Path(result["label_vector"]).is_file()
    again = subprocess.run([sys.executable, "-m", "engine", "synth", "--size", "512", "--seed", "1", "--out",
                            str(tmp_path / "s"), "--json"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "exists" in again.stderr  # never overwrites silently
    out = subprocess.run([sys.executable, "-m", "engine", "patches", "--label", result["label"], "--out",
                          str(tmp_path / "p"), "--patch-size", "64", "--optical", result["optical"], "--sar",
                          result["sar"], "--copy-rasters", "--json"], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    manifest = load_manifest(tmp_path / "p" / "manifest.json")
    assert manifest["sources"] == {"label": "label.tif", "optical": "optical.tif", "sar": "sar.tif"}
    assert (tmp_path / "p" / "sar.tif").is_file()
