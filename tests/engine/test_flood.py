"""Flood mapping from two SAR dates (engine.flood, engine.inference.sar_only): accuracy on a
synthetic pair with a known flood, per-pixel rules, exclusion, report, the CLI and a real pair."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from osgeo import ogr, osr
from rasterio.crs import CRS

from engine.config import InferenceConfig
from engine.flood.mapping import FloodConfig, FloodDate, classify_change, map_flood
from engine.flood.report import row_areas_m2
from engine.flood.synthetic import make_flood_pair
from engine.flood.terrain import Geometry, classify_local_incidence, local_incidence_from_dem
from engine.inference.sar_only import water_probability
from engine.models.checkpoint import read_metadata
from engine.progress import CallbackProgress, Canceled
from engine.raster.grid import Grid
from engine.raster.io import read_bands, write_raster

ROOT = Path(__file__).resolve().parents[2]
TEACHER = ROOT / "resources" / "models" / "sgcad_teacher.safetensors"
CAMARGUE = ROOT.parent / "shared" / "data" / "sentinel1_camargue"
BEFORE_2015 = CAMARGUE / "S1A__IW___A_20150309T173017_VV_grd_mli_geo_norm_db.tif"
AFTER_2017 = CAMARGUE / "S1A__IW___D_20170309T054356_VV_grd_mli_geo_norm_db.tif"


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """512 x 512 pair at 10 m, before date in linear power on another grid, after date in dB."""
    return make_flood_pair(tmp_path_factory.mktemp("pair"), size=512, seed=1, warp_before=True)


def test_synthetic_pair_threshold_flood_iou(pair, tmp_path):
    """The known flood is found with IoU >= 0.9 although the dates differ in grid and units."""
    assert 0.1 < pair["flood_fraction"] < 0.2
    with rasterio.open(pair["before_sar"]) as b, rasterio.open(pair["after_sar"]) as a:
        assert b.res != a.res and b.transform != a.transform
    result = map_flood(pair["after_sar"], pair["before_sar"], tmp_path, FloodConfig(method="threshold"),
                       truth=pair["truth"])
    scores = result["scores"]
    assert scores["flood_iou"] >= 0.9, scores
    assert scores["precision"] >= 0.95
    assert result["dates"]["after"]["units"] == "db" and result["dates"]["before"]["units"] == "linear"
    flood = read_bands(result["outputs"]["flood"], [1])[0]
    assert flood.shape == (512, 512)  # the after date's grid
    assert set(np.unique(flood[np.isfinite(flood)]).tolist()) <= {0, 1, 2, 3, 254, 255}
    like = read_bands(result["outputs"]["likelihood"], [1])[0]
    truth = read_bands(pair["truth"], [1])[0] == 1
    assert np.nanmean(like[truth]) > 0.7 > 0.1 > np.nanmean(like[~truth])
    km2 = result["totals"]["flood_km2"]
    assert km2 == pytest.approx((flood == 1).sum() * 100 / 1e6, rel=1e-6)
    report = json.loads(Path(result["outputs"]["report_json"]).read_text())
    assert report["scores"]["flood_iou"] == scores["flood_iou"]
    assert "Flood km²" in Path(result["outputs"]["report_html"]).read_text()


def test_synthetic_pair_teacher_runs(pair, tmp_path):
    """The teacher method writes every output; its IoU is reported, not asserted (docs/flood.md)."""
    result = map_flood(pair["after_sar"], pair["before_sar"], tmp_path, FloodConfig(method="teacher"),
                       teacher_path=TEACHER, inference=InferenceConfig(tile_size=256, overlap=32),
                       truth=pair["truth"], vectorize=True)
    for key in ("flood", "likelihood", "exclusion", "water_after", "water_before", "polygons"):
        assert Path(result["outputs"][key]).is_file(), key
    p = read_bands(result["outputs"]["water_after"], [1])[0]
    assert np.nanmin(p) >= 0 and np.nanmax(p) <= 1 and np.isfinite(p).all()
    assert result["scores"]["flood_iou"] is not None
    assert result["dates"]["after"]["method"] == "teacher"


def test_student_maps_dates_with_optical(tmp_path):
    """With an optical image of each date the student maps water (its water class), the teacher only
    where the optical is missing; the dates keep their own units."""
    pair = make_flood_pair(tmp_path / "pair", size=256, seed=3)
    after = FloodDate(pair["after_sar"], optical=pair["after_optical"])
    before = FloodDate(pair["before_sar"], optical=pair["before_optical"])
    result = map_flood(after, before, tmp_path / "out", FloodConfig(method="teacher"), teacher_path=TEACHER,
                       student_path=ROOT / "resources" / "models" / "sgcad_student.safetensors",
                       inference=InferenceConfig(tile_size=256, overlap=32), truth=pair["truth"])
    assert result["method"].startswith("teacher (student")
    for name in ("after", "before"):
        assert result["dates"][name]["method"] == "student"
        assert 0 < result["dates"][name]["water_fraction"] < 0.5
    assert result["scores"]["flood_iou"] is not None
    with pytest.raises(ValueError, match="optical"):
        map_flood(pair["after_sar"], pair["before_sar"], tmp_path / "x", FloodConfig(method="threshold"),
                  student_path=ROOT / "resources" / "models" / "sgcad_student.safetensors")


def test_sar_only_streaming_is_seamless(tmp_path):
    """Tiles blended with overlap equal one whole-scene tile for a network with a small receptive field."""
    meta = read_metadata(TEACHER)
    net = torch.nn.Conv2d(1, 2, 3, padding=1)
    torch.manual_seed(0)
    torch.nn.init.normal_(net.weight, std=2.0)
    g = Grid(CRS.from_epsg(32631).to_wkt(), Affine(10, 0, 500000, 0, -10, 5000000), 300, 260)
    rng = np.random.default_rng(0)
    db = rng.normal(-12, 4, (260, 300)).astype(np.float32)
    db[100:140, 50:120] = np.nan
    write_raster(tmp_path / "sar.tif", db, g, nodata=float("nan"))
    outs = {}
    for tile, overlap in ((512, 0), (96, 32)):
        path = tmp_path / f"p{tile}.tif"
        water_probability(tmp_path / "sar.tif", TEACHER, path, cfg=InferenceConfig(tile_size=tile, overlap=overlap),
                          teacher=(net, meta))
        outs[tile] = read_bands(path, [1])[0]
    assert np.array_equal(np.isnan(outs[512]), np.isnan(outs[96]))
    assert np.isnan(outs[512][110, 60])
    np.testing.assert_allclose(outs[96], outs[512], atol=1e-5)


def test_change_rules():
    cfg = FloodConfig()
    water_a = np.array([1, 1, 1, 0, 0, 1, 0, 1], bool)
    water_b = np.array([0, 0, 1, 1, 1, 0, 0, 1], bool)
    db_a = np.array([-20, -16, -20, -10, -12, -17, -9, -22], np.float32)
    db_b = np.array([-10, -15, -20, -20, -13, -16, -9, -16], np.float32)
    p_a = np.array([.9, .6, .9, .1, .4, .6, .1, .9], np.float32)
    p_b = np.array([.1, .45, .9, .9, .55, .2, .1, .6], np.float32)
    out = classify_change(water_a, water_b, db_a, db_b, p_a, p_b, cfg)
    # flood; unchanged (mean p >= 0.5: permanent); permanent; receded; unchanged dry; unchanged dry;
    # dry; water on both but 6 dB darker: was not open water before -> flood
    assert out.tolist() == [1, 2, 2, 3, 0, 0, 0, 1]
    out = classify_change(water_a, water_b, db_a, db_b, p_a, p_b, FloodConfig(darkened_water_is_flood=False))
    assert out[-1] == 2


def test_terrain_rules():
    theta = np.array([-5.0, 0.0, 20.0, 89.9, 90.0, np.nan])
    shadow, layover = classify_local_incidence(theta)
    assert shadow.tolist() == [False, False, False, False, True, False]
    assert layover.tolist() == [True, True, False, False, False, False]
    # a plane rising towards the east by 1 m per metre (45 deg), radar looking east (90 deg)
    x = np.arange(7, dtype=np.float64) * 10.0
    dem = np.tile(x, (7, 1))
    theta = local_incidence_from_dem(dem, 10.0, 10.0, 90.0, 39.0)
    assert theta.shape == (5, 5) and np.allclose(theta, 39.0 - 45.0)  # slope faces the radar: layover
    theta = local_incidence_from_dem(dem, 10.0, 10.0, 270.0, 39.0)
    assert np.allclose(theta, 84.0)  # facing away, 84 deg: not yet shadow
    steep = local_incidence_from_dem(dem * 2.0, 10.0, 10.0, 270.0, 39.0)
    assert (steep >= 90).all()  # 63 deg slope facing away: shadow
    north = local_incidence_from_dem(np.tile(x[::-1, None], (1, 7)), 10.0, 10.0, 0.0, 39.0)
    assert np.allclose(north, 39.0 - 45.0)  # rows grow south: heights rising northwards


def small_grid(n: int = 64) -> Grid:
    return Grid(CRS.from_epsg(32631).to_wkt(), Affine(20, 0, 600000, 0, -20, 4800000), n, n)


class ContextWater(torch.nn.Module):
    """A stand-in teacher that, like a network seeing context, calls -21 dB water but -27 dB (a
    runway, dry sand) not water; its input is dB scaled by the teacher's stored range."""

    def __init__(self, meta) -> None:
        super().__init__()
        band = meta.sar_normalization.bands[0]
        self.low, self.high = band.p_low, band.p_high

    def forward(self, sar: torch.Tensor) -> torch.Tensor:
        db = self.low + sar[:, :1] * (self.high - self.low)
        logit = 2.0 * torch.minimum(db + 24.0, -16.0 - db)
        return torch.cat([torch.zeros_like(logit), logit], dim=1)


def test_exclusion_layers_and_report(tmp_path):
    """Low backscatter on both dates (not water: excluded), shadow and layover from a local incidence
    raster, nodata, and the flooded area per AOI polygon (given in another CRS) in km²."""
    n = 64
    g = small_grid(n)
    rng = np.random.default_rng(1)
    land, water = -9.0, -21.0
    before = np.full((n, n), land) + rng.normal(0, 0.5, (n, n))
    after = before.copy()
    after[:, :32] = water + rng.normal(0, 0.5, (n, 32))  # flood on the left half
    before[40:, 40:] = after[40:, 40:] = -27.0  # dark on both dates, e.g. dry sand: excluded
    before[:8, 56:] = np.nan  # no data before
    for name, arr in (("before", before), ("after", after)):
        write_raster(tmp_path / f"{name}.tif", arr.astype(np.float32), g, nodata=float("nan"))
    lia = np.full((n, n), 35.0, np.float32)
    lia[10:14, 40:50] = 95.0  # shadow after
    lia[20:24, 40:50] = -3.0  # layover after
    write_raster(tmp_path / "lia.tif", lia, g, nodata=float("nan"))
    # two AOI polygons: the left (flooded) and the right half, in another CRS
    aoi = tmp_path / "aoi.gpkg"
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(4326)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    utm = osr.SpatialReference()
    utm.ImportFromEPSG(32631)
    utm.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    to_geo = osr.CoordinateTransformation(utm, srs)
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(aoi))
    layer = ds.CreateLayer("areas", srs=srs, geom_type=ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("district", ogr.OFTString))
    for name, x0, x1 in (("west", 600000, 600640), ("east", 600640, 601280)):
        ring = ogr.Geometry(ogr.wkbLinearRing)
        for x, y in ((x0, 4800000), (x1, 4800000), (x1, 4798720), (x0, 4798720), (x0, 4800000)):
            ring.AddPoint_2D(x, y)
        poly = ogr.Geometry(ogr.wkbPolygon)
        poly.AddGeometry(ring)
        poly.Transform(to_geo)
        f = ogr.Feature(layer.GetLayerDefn())
        f.SetField("district", name)
        f.SetGeometry(poly)
        layer.CreateFeature(f)
    ds = None
    after_date = FloodDate(tmp_path / "after.tif", geometry=Geometry(local_incidence=str(tmp_path / "lia.tif")))
    result = map_flood(after_date, tmp_path / "before.tif", tmp_path / "out", FloodConfig(method="teacher"),
                       teacher=(ContextWater(read_metadata(TEACHER)), read_metadata(TEACHER)), aoi=aoi,
                       aoi_name_field="district")
    ex = read_bands(result["outputs"]["exclusion"], [1])[0]
    flood = read_bands(result["outputs"]["flood"], [1])[0]
    assert (ex[45:, 45:] == 4).all() and (flood[45:, 45:] == 254).all()
    assert (ex[10:14, 40:50] == 2).all() and (ex[20:24, 40:50] == 3).all()
    assert (ex[:8, 56:] == 1).all() and np.isnan(flood[:8, 56:]).all()  # 255 is the nodata value
    assert (flood[:, 2:30] == 1).mean() > 0.95
    areas = {a["name"]: a for a in result["areas"]}
    assert set(areas) == {"west", "east"}
    pixel_km2 = 20 * 20 / 1e6
    assert areas["west"]["flood_km2"] == pytest.approx((flood[:, :32] == 1).sum() * pixel_km2, rel=1e-6)
    assert areas["east"]["flood_km2"] == pytest.approx((flood[:, 32:] == 1).sum() * pixel_km2, rel=1e-6)
    assert result["totals"]["excluded_km2"] == pytest.approx((flood == 254).sum() * pixel_km2, rel=1e-6)
    html = Path(result["outputs"]["report_html"]).read_text()
    assert "west" in html and "east" in html


def test_geographic_pixel_areas_are_the_wgs84_cells():
    g = Grid(CRS.from_epsg(4326).to_wkt(), Affine(0.01, 0, 0.0, 0, -0.01, 60.0), 10, 10)
    area = row_areas_m2(g, 0, 10)
    # independent of the closed form: the surface element of the WGS84 ellipsoid integrated over the cell
    a, f = 6_378_137.0, 1 / 298.257223563
    e2 = f * (2 - f)
    phi = np.radians(np.linspace(59.99, 60.0, 2001))
    element = a * np.cos(phi) / np.sqrt(1 - e2 * np.sin(phi) ** 2) * a * (1 - e2) / (1 - e2 * np.sin(phi) ** 2) ** 1.5
    expected = np.radians(0.01) * np.trapz(element, phi)
    assert area[0] == pytest.approx(expected, rel=1e-9)
    assert area[0] == pytest.approx(1111.95 * 1111.95 * np.cos(np.radians(59.995)) * 1.006, rel=1e-3)  # sphere + 0.6 %
    assert (np.diff(area) > 0).all()  # cells grow towards the equator
    world = Grid(CRS.from_epsg(4326).to_wkt(), Affine(1.0, 0, -180.0, 0, -1.0, 90.0), 360, 180)
    assert 360 * row_areas_m2(world, 0, 180).sum() == pytest.approx(510_065_621.724e6, rel=1e-9)  # WGS84's surface


def test_relative_levels_take_each_dates_cut_from_the_scene(tmp_path):
    # airborne X-band Rotterdam (not sigma0): at the Sentinel-1 cut the teacher finds little water;
    # relative (given, or found from its polarisations), each date's cut comes from its own scene
    sar = ROOT / "resources" / "sample" / "rotterdam" / "sar_masked.tif"
    runs = {}
    for levels in ("calibrated", "relative", "auto"):
        runs[levels] = map_flood(FloodDate(sar, levels=levels), FloodDate(sar, levels=levels), tmp_path / levels,
                                 FloodConfig(method="teacher"), teacher_path=TEACHER)["dates"]["after"]
    assert runs["calibrated"]["scene_cut"] is None and 0.2 < runs["relative"]["scene_cut"] < 0.45
    assert runs["relative"]["teacher_water_fraction"] > runs["calibrated"]["teacher_water_fraction"] + 0.2
    assert runs["auto"]["scene_cut"] == runs["relative"]["scene_cut"]


def test_threshold_method_caps_the_water_mode_on_calibrated_levels_only(tmp_path):
    # the Nigeria flood chip's VV raised by 8 dB (water near -12 dB): read as sigma0 no tile's dark
    # mode can be open water, so the threshold maps none; given as relative levels (an airborne
    # product's own scale) the same split is the scene's water
    with rasterio.open(ROOT.parent / "shared" / "data" / "sen1floods11_s1" / "Nigeria_812045_S1Hand.tif") as src:
        profile, vv = src.profile, src.read(1) + 8.0
    profile.update(count=1)
    with rasterio.open(tmp_path / "brighter.tif", "w", **profile) as dst:
        dst.write(vv[None])
    runs = {}
    for levels in ("calibrated", "relative"):
        date = FloodDate(tmp_path / "brighter.tif", levels=levels)
        runs[levels] = map_flood(date, date, tmp_path / levels, FloodConfig(method="threshold"))["dates"]["after"]
    assert runs["calibrated"]["sar_levels"] == "calibrated" and runs["calibrated"]["threshold"]["method"] == "none"
    assert runs["relative"]["sar_levels"] == "relative" and runs["relative"]["threshold"]["method"] == "split"
    assert runs["relative"]["threshold"]["threshold_db"] == pytest.approx(-16.1 + 8.0, abs=0.3)


def test_requests_that_cannot_work(pair, tmp_path):
    with pytest.raises(ValueError, match="teacher"):
        map_flood(pair["after_sar"], pair["before_sar"], tmp_path, FloodConfig(method="teacher"))
    with pytest.raises(ValueError, match="SAR levels of the after date"):
        map_flood(FloodDate(pair["after_sar"], levels="sigma"), pair["before_sar"], tmp_path / "l",
                  FloodConfig(method="threshold"))
    with pytest.raises(ValueError, match="method"):
        FloodConfig(method="magic")
    out = tmp_path / "o"
    out.mkdir()
    (out / "flood_extent.tif").write_bytes(b"")
    with pytest.raises(ValueError, match="exists"):
        map_flood(pair["after_sar"], pair["before_sar"], out, FloodConfig(method="threshold"))
    far = tmp_path / "far.tif"
    g = Grid(CRS.from_epsg(32631).to_wkt(), Affine(10, 0, 100000, 0, -10, 1000000), 64, 64)
    write_raster(far, np.full((64, 64), -10, np.float32), g, nodata=float("nan"))
    with pytest.raises(ValueError, match="no valid pixel"):
        map_flood(pair["after_sar"], far, tmp_path / "x", FloodConfig(method="threshold"))


def test_cancel_leaves_nothing(pair, tmp_path):
    calls = {"n": 0}

    def cancel() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    out = tmp_path / "out"
    with pytest.raises(Canceled):
        map_flood(pair["after_sar"], pair["before_sar"], out, FloodConfig(method="threshold"),
                  progress=CallbackProgress(is_canceled=cancel))
    assert not out.exists()  # the folder the run made goes too


@pytest.mark.skipif(not AFTER_2017.exists(), reason="shared Camargue data not present")
def test_real_camargue_pair_cli(tmp_path):
    """The real pair through the CLI: plausible shares of water on both dates and a report."""
    done = subprocess.run(
        [sys.executable, "-m", "engine", "flood", "--after", str(AFTER_2017), "--before", str(BEFORE_2015),
         "--out", str(tmp_path), "--method", "threshold", "--json", "--quiet"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["ok"] and result["dates"]["after"]["units"] == "db"
    for name in ("after", "before"):  # ponds, marshes and flooded paddies: a tenth to a third of the scene
        assert 0.1 < result["dates"][name]["water_fraction"] < 0.4
    totals = result["totals"]
    assert totals["no_data_km2"] == 0 and totals["observed_km2"] == pytest.approx(268 * 217 * 400 / 1e6, rel=1e-6)
    assert totals["permanent_water_km2"] > totals["flood_km2"]


def test_the_cli_maps_with_the_bundled_expert_and_names_one_raster_given_as_both_dates(tmp_path):
    # no --teacher: the bundled water expert, as `engine water` uses (the command used to stop, asking for one)
    done = subprocess.run(
        [sys.executable, "-m", "engine", "flood", "--after", str(AFTER_2017), "--before", str(AFTER_2017),
         "--out", str(tmp_path / "same"), "--json", "--quiet"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["totals"]["flood_km2"] == 0 and result["totals"]["permanent_water_km2"] > 1
    assert any("the before and after dates are the same raster" in w for w in result["warnings"])


def test_a_before_date_off_the_after_date_is_named_with_its_shift(tmp_path):
    # products from two processors can sit a few pixels apart; every shore then maps as flood or receded water.
    # The real Camargue pair (2015, 2017) lines up; the 2017 date moved 3 pixels east and 2 north does not
    with rasterio.open(AFTER_2017) as src:
        profile, data = src.profile, src.read()
    profile["transform"] = src.transform * Affine.translation(3, -2)
    moved = tmp_path / "moved.tif"
    with rasterio.open(moved, "w", **profile) as dst:
        dst.write(data)
    cfg = FloodConfig(method="threshold")
    lined_up = map_flood(AFTER_2017, BEFORE_2015, tmp_path / "pair", cfg)
    assert not any("co-register" in w.lower() for w in lined_up["warnings"])
    off = map_flood(BEFORE_2015, moved, tmp_path / "off", cfg)
    said = [w for w in off["warnings"] if "Co-register the dates" in w]
    assert said and "the before date lies +60 m east and +40 m north of the after date (3 columns, 2 rows" in said[0]
    # 40 % of the scene's width off: the no-data collar takes 40 % of the window, the shared part still agrees
    profile["transform"] = src.transform * Affine.translation(107, 0)
    far = tmp_path / "far.tif"
    with rasterio.open(far, "w", **profile) as dst:
        dst.write(data)
    off = map_flood(BEFORE_2015, far, tmp_path / "far", cfg)
    said = [w for w in off["warnings"] if "Co-register the dates" in w]
    assert said and "lies +2140 m east and +0 m north of the after date (107 columns, 0 rows" in said[0], said
    # two different places (the lower Rhone written on the Camargue's grid) are not read as one place shifted
    from engine.flood.sources import db_source, registration_shift
    from engine.raster.grid import grid_of

    with rasterio.open(next(CAMARGUE.glob("*20171210*.tif"))) as src:
        rhone = src.read()
    with rasterio.open(AFTER_2017) as src:
        profile["transform"] = src.transform
    elsewhere = tmp_path / "elsewhere.tif"
    with rasterio.open(elsewhere, "w", **profile) as dst:
        dst.write(rhone)
    grid = grid_of(AFTER_2017)
    assert registration_shift(db_source(AFTER_2017, 1, grid).source, db_source(elsewhere, 1, grid).source) is None
