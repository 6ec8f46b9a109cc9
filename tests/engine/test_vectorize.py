"""Class map -> polygons (engine.vector): seamless across blocks, attributes, filters, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from osgeo import ogr
from rasterio.crs import CRS
from scipy import ndimage

from engine.progress import CallbackProgress, Canceled
from engine.raster.grid import Grid
from engine.raster.io import write_raster
from engine.vector.components import label_classes
from engine.vector.polygonize import vectorize_classes

ROOT = Path(__file__).resolve().parents[2]
NAMES = {0: "farmland", 1: "city", 2: "village", 3: "water"}


def grid(size: int, res: float = 10.0, crs: int = 32631) -> Grid:
    return Grid(CRS.from_epsg(crs).to_wkt(), Affine(res, 0, 500000, 0, -res, 5000000), size, size)


@pytest.fixture(scope="module")
def class_map(tmp_path_factory):
    """A 300 x 300 map of blocky regions with speckle, a nodata corner, a ring with a hole and a
    confidence raster (negative = SAR only) on the same grid."""
    folder = tmp_path_factory.mktemp("vectorize")
    rng = np.random.default_rng(0)
    n = 300
    classes = ndimage.zoom(rng.integers(0, 4, (30, 30)), 10, order=0).astype(np.uint8)
    salt = rng.random((n, n)) < 0.02
    classes[salt] = rng.integers(0, 4, int(salt.sum()))
    yy, xx = np.mgrid[:n, :n]
    ring = (np.hypot(yy - 150, xx - 150) < 70) & (np.hypot(yy - 150, xx - 150) >= 40)  # crosses many blocks
    classes[ring] = 3
    classes[:5, :7] = 255
    conf = rng.uniform(0.3, 1.0, (n, n)).astype(np.float32)
    conf[rng.random((n, n)) < 0.2] *= -1
    paths = {"classes": folder / "classes.tif", "confidence": folder / "confidence.tif", "folder": folder}
    write_raster(paths["classes"], classes, grid(n), nodata=255)
    with rasterio.open(paths["classes"], "r+") as dst:
        dst.update_tags(class_names=json.dumps({str(k): v for k, v in NAMES.items()}))
    write_raster(paths["confidence"], conf, grid(n), nodata=float("nan"))
    paths.update(array=classes, conf=conf)
    return paths


def features(path: Path) -> list:
    ds = ogr.Open(str(path))
    layer = ds.GetLayer(0)
    out = []
    for f in layer:
        g = f.GetGeometryRef()
        out.append((f.GetField("class_id"), f.GetField("class_name"), f.GetField("pixels"), f.GetField("area"),
                    f.GetField("perimeter"), f.GetField("mean_conf"), f.GetField("sar_only"), g.ExportToWkt(),
                    g.IsValid()))
    ds = None
    return sorted(out)


def test_tiled_run_equals_single_tile_run(class_map, tmp_path):
    """Polygons traced in 37- and 64-pixel blocks are exactly those of one 1024-pixel block."""
    results = {}
    for block in (1024, 64, 37):
        out = tmp_path / f"p{block}.gpkg"
        res = vectorize_classes(class_map["classes"], out, class_map["confidence"], block=block)
        results[block] = (res, features(out))
    single = results[1024][1]
    assert results[1024][0]["peak_open_pieces"] == 0  # nothing crossed a block border
    assert results[64][0]["peak_open_pieces"] > 0  # pieces were merged
    for block in (64, 37):
        assert results[block][1] == single
    assert all(f[-1] for f in single)  # valid geometries
    # every member pixel is in exactly one polygon: the areas add up to the mapped area
    classes = class_map["array"]
    assert sum(f[3] for f in single) == pytest.approx(100.0 * (classes != 255).sum())


def test_components_match_whole_raster_labelling(class_map, tmp_path):
    """One feature per 4-connected component of equal class, as scipy labels the whole raster."""
    classes = class_map["array"]
    labels, comp_class = label_classes(classes.astype(np.int64), classes != 255)
    out = tmp_path / "p.gpkg"
    vectorize_classes(class_map["classes"], out, block=50)
    feats = features(out)
    assert len(feats) == comp_class.size - 1
    counts = np.bincount(labels.ravel())[1:]
    assert sorted(f[2] for f in feats) == sorted(counts.tolist())


def test_attributes(class_map, tmp_path):
    out = tmp_path / "p.gpkg"
    vectorize_classes(class_map["classes"], out, class_map["confidence"], block=64)
    feats = features(out)
    classes, conf = class_map["array"], class_map["conf"]
    labels, _ = label_classes(classes.astype(np.int64), classes != 255)
    # the ring: the largest water component, with a hole; check its numbers against the raster
    water = [f for f in feats if f[0] == 3]
    ring = max(water, key=lambda f: f[2])
    assert ring[1] == "water"
    ring_label = np.bincount(labels[classes == 3]).argmax()
    mask = labels == ring_label
    assert ring[2] == int(mask.sum())
    assert ring[3] == pytest.approx(100.0 * mask.sum())  # no simplification: area = pixels x 100 m²
    assert ring[5] == pytest.approx(float(np.abs(conf[mask]).mean()), rel=1e-6)  # magnitude of the confidence
    assert ring[6] == pytest.approx(float((conf[mask] < 0).mean()), rel=1e-6)
    geom = ogr.CreateGeometryFromWkt(ring[7])
    assert geom.GetGeometryRef(0).GetGeometryCount() >= 2  # shell and hole
    ds = ogr.Open(str(out))
    f = ds.GetLayer(0).GetNextFeature()
    assert f.GetField("area_m2") == pytest.approx(f.GetField("area"))
    assert f.GetField("perimeter_m") == pytest.approx(f.GetField("perimeter"))
    assert ds.GetLayer(0).GetSpatialRef().GetAuthorityCode(None) == "32631"
    ds = None


def test_class_choice_min_area_and_simplification(class_map, tmp_path):
    out = tmp_path / "water.gpkg"
    res = vectorize_classes(class_map["classes"], out, classes=["Water"], min_area=500.0, simplify=15.0, block=64)
    feats = features(out)
    assert {f[0] for f in feats} == {3}
    assert all(f[2] * 100.0 >= 500.0 for f in feats)  # components of fewer than 5 pixels dropped
    assert res["dropped"]["below_min_area"] > 0
    assert all(f[-1] for f in feats)
    plain = tmp_path / "plain.gpkg"
    vectorize_classes(class_map["classes"], plain, classes=[3], min_area=500.0, block=64)
    def vertices(path: Path) -> int:
        return sum(len(f[7].split(",")) for f in features(path))

    assert vertices(out) < vertices(plain)
    # holes smaller than the minimum area were filled
    assert res["holes_filled"] > 0
    with pytest.raises(ValueError, match="no class named"):
        vectorize_classes(class_map["classes"], tmp_path / "x.gpkg", classes=["lava"])


def test_outputs_are_atomic(class_map, tmp_path):
    out = tmp_path / "p.gpkg"
    calls = {"n": 0}

    def cancel() -> bool:
        calls["n"] += 1
        return calls["n"] > 20

    with pytest.raises(Canceled):
        vectorize_classes(class_map["classes"], out, block=32, progress=CallbackProgress(is_canceled=cancel))
    assert list(tmp_path.iterdir()) == []
    vectorize_classes(class_map["classes"], out, block=128)
    with pytest.raises(ValueError, match="exists"):
        vectorize_classes(class_map["classes"], out)
    with pytest.raises(ValueError, match="GeoPackage"):
        vectorize_classes(class_map["classes"], tmp_path / "p.shp")


def test_geographic_grid_gets_ground_areas_and_metric_settings(tmp_path):
    """A real Sen1Floods11 chip's grid (EPSG:4326, about 10 m): areas in m², minimum area in m² and
    tolerance in metres, as on a projected grid; before, a minimum area given in m² was read as
    square degrees and dropped every polygon."""
    from osgeo import osr

    from engine.raster.grid import grid_of, row_areas_m2

    g = grid_of(ROOT.parent / "shared" / "data" / "sen1floods11_s1" / "India_900498_S1Hand.tif")
    classes = np.zeros((g.height, g.width), np.uint8)
    classes[100:160, 50:150] = 3  # a 100 x 60 px pond
    classes[300:303, 300:303] = 2  # a 3 x 3 px house, about 790 m²
    write_raster(tmp_path / "c.tif", classes, g, nodata=255)

    def features(out, **kwargs):
        result = vectorize_classes(tmp_path / "c.tif", tmp_path / out, names=NAMES, **kwargs)
        ds = ogr.Open(str(tmp_path / out))
        found = {f.GetField("class_name"): (f.GetField("area_m2"), f.GetField("perimeter_m"),
                                            f.GetGeometryRef().Clone()) for f in ds.GetLayer(0)}
        ds = None
        return result, found

    result, found = features("all.gpkg")
    pond_m2, pond_m, pond = found["water"]
    # the flood report's exact cell areas on the same ellipsoid
    assert pond_m2 == pytest.approx(100 * row_areas_m2(g, 100, 60).sum(), rel=1e-7)
    a, e2 = 6_378_137.0, 0.0066943799901
    top, bottom = (np.radians(g.transform.f + g.transform.e * r) for r in (100, 160))
    width_m = sum(np.radians(100 * g.transform.a) * a * np.cos(p) / np.sqrt(1 - e2 * np.sin(p) ** 2)
                  for p in (top, bottom))
    height_m = a * (1 - e2) * (top - bottom) / (1 - e2 * np.sin(0.5 * (top + bottom)) ** 2) ** 1.5
    assert pond_m == pytest.approx(width_m + 2 * height_m, rel=1e-6)
    # independent of the closed form: the pond in its UTM zone (a conformal map: scale 0.9996-1.0010), within 0.2 %
    wgs84, utm = osr.SpatialReference(), osr.SpatialReference()
    wgs84.ImportFromEPSG(4326)
    utm.ImportFromEPSG(32600 + int((g.transform.c + 180) // 6) + 1)
    wgs84.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    pond.Transform(osr.CoordinateTransformation(wgs84, utm))
    assert pond_m2 == pytest.approx(pond.GetArea(), rel=2e-3)
    assert result["per_class"]["water"]["area_km2"] == pytest.approx(pond_m2 / 1e6, abs=1e-6)
    assert result["ground_units"] == "ellipsoid" and 700 < found["village"][0] < 900

    # a minimum area in m² drops the house only; a tolerance in metres, not degrees
    result, found = features("min.gpkg", min_area=2000.0, simplify=5.0)
    assert set(found) == {"farmland", "water"} and result["dropped"]["below_min_area"] == 1
    assert found["water"][0] == pytest.approx(pond_m2, rel=1e-6)


def test_cli_json(class_map, tmp_path):
    out = tmp_path / "p.gpkg"
    done = subprocess.run(
        [sys.executable, "-m", "engine", "vectorize", "--classes", str(class_map["classes"]), "--confidence",
         str(class_map["confidence"]), "--out", str(out), "--keep", "water,0", "--min-area", "300", "--json",
         "--quiet"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["ok"] and result["polygons"] == len(features(out))
    assert set(result["per_class"]) == {"farmland", "water"}
