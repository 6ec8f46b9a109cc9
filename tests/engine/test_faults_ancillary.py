"""Ancillary rasters that hold the wrong thing or another place, and areas in a distorting CRS
(qgis_process sweep A3, A4, A11, A12): refused in one line, or measured on the ground."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from osgeo import ogr
from rasterio.crs import CRS
from rasterio.warp import Resampling, calculate_default_transform, reproject

from engine.config import InferenceConfig
from engine.flood.mapping import FloodConfig, FloodDate, map_flood
from engine.flood.terrain import Geometry
from engine.inference.pipeline import prepare_job
from engine.progress import NULL_PROGRESS
from engine.raster.grid import Grid, grid_of, row_areas_m2
from engine.raster.io import read_bands, write_raster
from engine.validate import SgcadError
from engine.vector.polygonize import vectorize_classes

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"
BEFORE = DATA / "sentinel1_camargue" / "S1A__IW___A_20150309T173017_VV_grd_mli_geo_norm_db.tif"
AFTER = DATA / "sentinel1_camargue" / "S1A__IW___D_20170309T054356_VV_grd_mli_geo_norm_db.tif"
INDIA = DATA / "sen1floods11_s1" / "India_900498_S1Hand.tif"  # EPSG:4326, lat 26.7 N, another continent
ROTTERDAM = ROOT / "resources" / "sample" / "rotterdam"
STUDENT = ROOT / "resources" / "models" / "sgcad_student.safetensors"
THRESHOLD = FloodConfig(method="threshold")


def _like(path: Path, out: Path, values: np.ndarray, nodata=None) -> Path:
    write_raster(out, values.astype(np.float32), grid_of(path), nodata=nodata)
    return out


def _flood(tmp_path: Path, name: str, after: FloodDate = None, **kwargs):
    return map_flood(after or FloodDate(AFTER), FloodDate(BEFORE), tmp_path / name, THRESHOLD, **kwargs)


def test_db_sar_as_local_incidence_is_refused_and_angles_exclude_only_their_pixels(tmp_path):
    # A3: the after SAR itself as its local incidence: every dB value is <= 0, i.e. "layover" everywhere
    with pytest.raises(SgcadError) as err:
        _flood(tmp_path, "sar", FloodDate(AFTER, geometry=Geometry(str(AFTER))))
    text = str(err.value)
    assert "after local incidence raster (--after-local-incidence / AFTER_LOCAL_INCIDENCE)" in text
    assert str(AFTER) in text and "are not local incidence angles in degrees (0–90" in text
    assert "(median -11.6)" in text and "100 % of them" in text
    assert not (tmp_path / "sar").exists()
    # the same angles in radians are refused too
    g = grid_of(AFTER)
    radians = _like(AFTER, tmp_path / "rad.tif", np.full((g.height, g.width), np.radians(35.0)))
    with pytest.raises(SgcadError, match="look like angles in radians"):
        _flood(tmp_path, "rad", FloodDate(AFTER, geometry=Geometry(str(radians))))
    # real angles: 35 degrees with a 40 x 30 block of shadow (95) exclude just that block
    angles = np.full((g.height, g.width), 35.0)
    angles[50:80, 100:140] = 95.0
    lia = _like(AFTER, tmp_path / "lia.tif", angles)
    result = _flood(tmp_path, "ok", FloodDate(AFTER, geometry=Geometry(str(lia))))
    assert result["totals"]["excluded_km2"] == pytest.approx(40 * 30 * abs(g.res[0] * g.res[1]) / 1e6, rel=1e-6)


def test_dem_and_local_incidence_of_another_place_are_refused(tmp_path):
    # A11: the India chip is 7000 km from the Camargue pair; before, both were read as all-NaN and ignored
    with pytest.raises(SgcadError) as err:
        _flood(tmp_path, "dem", dem=INDIA)
    assert f"DEM (--dem / DEM) {INDIA} does not overlap the after SAR" in str(err.value)
    assert "in EPSG:32631" in str(err.value)
    with pytest.raises(SgcadError, match=r"after local incidence raster .* does not overlap the after SAR"):
        _flood(tmp_path, "lia", FloodDate(AFTER, geometry=Geometry(str(INDIA))))
    # heights that are not metres (centimetres of a 40-120 m relief)
    g = grid_of(AFTER)
    cm = _like(AFTER, tmp_path / "cm.tif", np.linspace(4000, 12000, g.height * g.width).reshape(g.height, g.width))
    with pytest.raises(SgcadError, match=r"DEM .*: values 4.16e\+03…1.18e\+04 .* are not heights in metres"):
        _flood(tmp_path, "cm", FloodDate(AFTER, geometry=Geometry(None, 80.0)), dem=cm)


def test_dem_without_a_look_direction_is_reported_unused(tmp_path):
    g = grid_of(AFTER)
    dem = _like(AFTER, tmp_path / "dem.tif", np.full((g.height, g.width), 3.0))
    result = _flood(tmp_path, "out", dem=dem)
    assert any(w.startswith(f"the DEM {dem} is not used") and "AFTER_LOOK_AZIMUTH" in w for w in result["warnings"])
    used = _flood(tmp_path, "used", FloodDate(AFTER, geometry=Geometry(None, 80.0)), dem=dem)
    assert not any("is not used" in w for w in used["warnings"])


def _job(tmp_path: Path, cloud: Path):
    return prepare_job(ROTTERDAM / "rgb_unmasked.tif", ROTTERDAM / "sar_masked.tif", STUDENT, tmp_path / "seg", None,
                       InferenceConfig(device="cpu", threads=1), None, NULL_PROGRESS, cloud_mask=cloud)


def test_cloud_masks_of_another_place_or_of_sar_values_are_refused(tmp_path):
    # A12: a Landsat scene of another continent, then the 4-band dB SAR itself, as cloud masks
    with pytest.raises(SgcadError, match=r"cloud mask \(--cloud-mask / CLOUD_MASK\) .*RGB.byte.tif does not overlap"):
        _job(tmp_path, DATA / "landsat_rgb" / "RGB.byte.tif")
    with pytest.raises(SgcadError) as err:
        _job(tmp_path, ROTTERDAM / "sar_masked.tif")
    assert "band 1 holds values -18.1…4.92 (median -12.4)" in str(err.value) and "4 bands" in str(err.value)
    assert "a cloud mask holds 0 (clear) and 1 (cloud), or a cloud probability (0–1) or percentage" in str(err.value)
    # a usable mask: 0/1 passes quietly, a probability or a mask cloudy everywhere is said to be so
    sar = ROTTERDAM / "sar_masked.tif"
    g = grid_of(sar)
    half = np.zeros((g.height, g.width))
    half[:, : g.width // 2] = 1
    assert _job(tmp_path, _like(sar, tmp_path / "half.tif", half)).warnings == []
    everywhere = _like(sar, tmp_path / "all.tif", np.ones((g.height, g.width)))
    (warning,) = _job(tmp_path, everywhere).warnings
    assert "marks 100 % of the scene as cloud" in warning and "SAR-only water / non-water" in warning


def test_cloud_probabilities_and_percentages_are_cloud_from_half_and_class_codes_are_said(tmp_path):
    """Before: every non-zero probability was cloud, so a 3 % cloud probability dropped the optical image."""
    from engine.inference.pipeline import segment_scene

    sar = ROTTERDAM / "sar_masked.tif"
    g = grid_of(sar)
    columns = np.broadcast_to(np.arange(g.width) >= g.width // 4, (g.height, g.width))  # 3/4 of the scene
    cases = {  # values on the clear quarter and the cloudy rest -> the cut, and words of the warning
        "probability": (0.03, 0.9, 0.5, "read as a cloud probability: cloud from 0.5 on"),
        "percentage": (3, 90, 50, "read as a cloud percentage: cloud from 50 % on"),
    }
    for name, (clear, cloudy, cut, words) in cases.items():
        values = np.where(columns, cloudy, clear)
        values[0, :3] = np.array([0, 0.2, 0.4]) * 2 * cut  # a few more levels, as any probability has
        mask = _like(sar, tmp_path / f"{name}.tif", values)
        job = _job(tmp_path, mask)
        (warning,) = job.warnings
        assert job.cloud_cut == cut and words in warning and "marks 75 % of the scene as cloud" in warning, warning
        result = segment_scene(ROTTERDAM / "rgb_unmasked.tif", sar, STUDENT, tmp_path / f"seg_{name}",
                               cfg=InferenceConfig(device="cpu", threads=1), cloud_mask=mask)
        share = result["sar_without_optical_pixels"] / result["sar_pixels"]
        assert share == pytest.approx(0.75, abs=0.01), (name, share)  # the clear quarter keeps its optical image
    codes = _like(sar, tmp_path / "scl.tif", np.indices((g.height, g.width))[1] % 12)  # Sentinel-2 SCL's 0-11
    job = _job(tmp_path, codes)
    assert job.cloud_cut == 0.5 and "like class codes (Sentinel-2 SCL, Fmask)" in job.warnings[0]
    assert "SCL 3, 8, 9, 10" in job.warnings[0]


def test_web_mercator_areas_are_ground_areas(tmp_path):
    # A4: the India chip (EPSG:4326, 26.7 N) warped to EPSG:3857, whose metres there are 1.118 ground metres
    with rasterio.open(INDIA) as src:
        t, w, h = calculate_default_transform(src.crs, "EPSG:3857", src.width, src.height, *src.bounds)
    g3857 = Grid(CRS.from_epsg(3857).to_wkt(), t, w, h)
    vv = read_bands(INDIA, [1])[0]
    warped = np.full((h, w), np.nan, np.float32)
    reproject(vv, warped, src_transform=grid_of(INDIA).transform, src_crs="EPSG:4326", src_nodata=np.nan,
              dst_transform=t, dst_crs="EPSG:3857", dst_nodata=np.nan, resampling=Resampling.nearest)
    merc = tmp_path / "india_3857.tif"
    write_raster(merc, warped, g3857, nodata=float("nan"))
    g4326 = grid_of(INDIA)
    ground = row_areas_m2(g4326, 0, g4326.height).sum() * g4326.width / 1e6
    planar = abs(t.a * t.e) * w * h / 1e6
    measured = row_areas_m2(g3857, 0, h).sum() * w / 1e6
    assert ground == pytest.approx(23.316, abs=1e-3) and planar == pytest.approx(29.333, abs=1e-3)
    assert measured == pytest.approx(ground, rel=0.01)  # was the planar 29.33 km², +26 %
    # and what a report states: the same date's water and observed area in both CRSs
    maps = {name: map_flood(FloodDate(path, bands=(1,)), FloodDate(path, bands=(1,)), tmp_path / name, THRESHOLD)
            for name, path in (("geo", INDIA), ("merc", merc))}
    for key in ("permanent_water_km2", "observed_km2"):
        assert maps["merc"]["totals"][key] == pytest.approx(maps["geo"]["totals"][key], rel=0.01), key
    assert maps["geo"]["totals"]["permanent_water_km2"] > 5.0
    # polygons of a pond (a 200 x 200 px block warped alike) measure the same ground in both CRSs
    pond = np.zeros((g4326.height, g4326.width), np.uint8)
    pond[100:300, 50:250] = 3
    pond_merc = np.zeros((h, w), np.uint8)
    reproject(pond, pond_merc, src_transform=g4326.transform, src_crs="EPSG:4326", dst_transform=t,
              dst_crs="EPSG:3857", resampling=Resampling.nearest)
    pond_m2 = {}
    for name, grid, values in (("geo", g4326, pond), ("merc", g3857, pond_merc)):
        write_raster(tmp_path / f"pond_{name}.tif", values, grid, nodata=255)
        vectorize_classes(tmp_path / f"pond_{name}.tif", tmp_path / f"pond_{name}.gpkg", classes=[3])
        ds = ogr.Open(str(tmp_path / f"pond_{name}.gpkg"))
        pond_m2[name] = sum(f.GetField("area_m2") for f in ds.GetLayer(0))
        ds = None
    assert pond_m2["geo"] == pytest.approx(200 * row_areas_m2(g4326, 100, 200).sum(), rel=1e-6)
    assert pond_m2["merc"] == pytest.approx(pond_m2["geo"], rel=0.01)  # was 1.26 times it
    # a CRS that keeps areas (UTM) keeps its own units
    utm = Grid(CRS.from_epsg(32631).to_wkt(), Affine(20, 0, 600000, 0, -20, 4800000), 100, 100)
    assert (row_areas_m2(utm, 0, 100) == 400.0).all()


def test_areas_of_interest_with_the_same_name_are_told_apart_in_the_report(tmp_path):
    # before: two areas both reported as "A", one of them all nodata, with nothing to say which was which
    from osgeo import osr

    from engine.flood.report import load_zones

    grid = grid_of(AFTER)
    srs = osr.SpatialReference()
    srs.ImportFromWkt(grid.crs_wkt)
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(tmp_path / "areas.gpkg"))
    layer = ds.CreateLayer("areas", srs, ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("name", ogr.OFTString))
    left, top = grid.transform.c, grid.transform.f
    for k, name in enumerate(("A", "B", "A")):
        x0, y0 = left + 400 * (k + 1), top - 400 * (k + 1)
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetField("name", name)
        feature.SetGeometry(ogr.CreateGeometryFromWkt(
            f"POLYGON(({x0} {y0},{x0 + 300} {y0},{x0 + 300} {y0 - 300},{x0} {y0 - 300},{x0} {y0}))"))
        layer.CreateFeature(feature)
    ds = None
    assert [z.name for z in load_zones(tmp_path / "areas.gpkg", grid, "name")] == ["A (polygon 1)", "B",
                                                                                   "A (polygon 3)"]
