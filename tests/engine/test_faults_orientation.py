"""Rasters stored south-up, east-left or with a rotated geotransform are mapped as their north-up originals;
a raster in a local (engineering) CRS is refused.

From the second bad-input sweep: a south-up pair was refused as "do not overlap" while printing two equal
extents, a south-up SAR reached the networks upside down (a SAR-only map changed on a third of its pixels),
and a rotated geotransform lost a band of bottom rows in segment, water, flood and evaluate, so areas and
scores were wrong without a word. Each case here writes the same pixels with another geotransform.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from engine.cli import main
from engine.raster.grid import Grid, grid_of, north_up, read_on_grid

ROOT = Path(__file__).resolve().parents[2]
ROTTERDAM = ROOT / "resources" / "sample" / "rotterdam"
NIGERIA = ROOT.parent / "shared" / "data" / "sen1floods11_s1" / "Nigeria_812045_S1Hand.tif"
STUDENT = ROOT / "resources" / "models" / "sgcad_student.safetensors"


def restored(src_path: Path, out: Path, how: str) -> Path:
    """The raster's pixels under another geotransform: "south-up" and "east-left" hold the same ground in
    flipped pixel order; "rotated" keeps the pixel order and turns the grid 20 degrees about its corner."""
    with rasterio.open(src_path) as src:
        data, profile, t = src.read(), src.profile, src.transform
    if how == "south-up":
        data, t = data[:, ::-1], Affine(t.a, 0, t.c, 0, -t.e, t.f + t.e * profile["height"])
    elif how == "east-left":
        data, t = data[:, :, ::-1], Affine(-t.a, 0, t.c + t.a * profile["width"], 0, t.e, t.f)
    else:
        t = t * Affine.rotation(20)
    for key in ("blockxsize", "blockysize", "tiled"):
        profile.pop(key, None)
    with rasterio.open(out, "w", **dict(profile, transform=t)) as dst:
        dst.write(np.ascontiguousarray(data))
    return out


def cli_json(*args) -> dict:
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main([str(a) for a in args] + ["--json"])
    assert code == 0, buffer.getvalue()[-2000:]
    return json.loads(buffer.getvalue())


def test_a_flipped_raster_is_read_onto_its_north_up_grid_exactly(tmp_path):
    for how in ("south-up", "east-left"):
        flipped = restored(ROTTERDAM / "sar_masked.tif", tmp_path / f"{how}.tif", how)
        grid = north_up(grid_of(flipped))
        assert grid.same_as(grid_of(ROTTERDAM / "sar_masked.tif"))
        original = read_on_grid(ROTTERDAM / "sar_masked.tif", [1, 2], grid_of(ROTTERDAM / "sar_masked.tif"))
        np.testing.assert_array_equal(read_on_grid(flipped, [1, 2], grid), original)  # no resampling
    rotated = grid_of(restored(ROTTERDAM / "sar_masked.tif", tmp_path / "rotated.tif", "rotated"))
    assert north_up(rotated) is rotated and rotated.transform.b != 0  # read in its own pixel order


@pytest.mark.parametrize("how", ["south-up", "east-left"])
def test_a_flipped_pair_is_segmented_as_the_original(tmp_path, how):
    # before: "do not overlap (optical extent (592317.9, 5750102.2, 593217.9, 5749202.2), SAR extent (the same))"
    runs = {}
    for name, folder in (("original", ROTTERDAM), (how, tmp_path)):
        optical, sar = ROTTERDAM / "rgb_unmasked.tif", ROTTERDAM / "sar_masked.tif"
        if folder is tmp_path:
            optical, sar = (restored(p, tmp_path / f"{how}_{p.name}", how) for p in (optical, sar))
        cli_json("segment", "--optical", optical, "--sar", sar, "--model", STUDENT, "--out", tmp_path / name,
                 "--device", "cpu", "--threads", 1)
        with rasterio.open(tmp_path / name / "classes.tif") as classes:
            runs[name] = classes.read(1), classes.transform
    (original, t0), (flipped, t1) = runs["original"], runs[how]
    assert t1 == t0  # written north-up, where the original lies
    assert np.mean(flipped == original) > 0.99  # the stretch samples other pixels; the network sees the same


def test_a_rotated_raster_keeps_every_row_and_its_area(tmp_path):
    # before: rows 458-511 were nodata, 9.66 km² of water reported instead of 12.69
    rotated = restored(NIGERIA, tmp_path / "rotated.tif", "rotated")
    reports = {}
    for name, sar in (("original", NIGERIA), ("rotated", rotated)):
        cli_json("water", "--sar", sar, "--out", tmp_path / name, "--device", "cpu", "--threads", 1)
        reports[name] = json.loads((tmp_path / name / "water_report.json").read_text())
        with rasterio.open(tmp_path / name / "water.tif") as water:
            reports[name]["map"] = water.read(1)
    original, turned = reports["original"], reports["rotated"]
    np.testing.assert_array_equal(turned["map"], original["map"])  # the same pixels, in the same order
    assert turned["water_km2"] == pytest.approx(original["water_km2"], rel=1e-3)
    assert turned["valid_km2"] == pytest.approx(original["valid_km2"], rel=1e-3)


def test_evaluate_scores_every_pixel_of_a_rotated_pair(tmp_path):
    # before: 4,555 of 7,874 labelled pixels scored (OA 0.70 instead of 0.65)
    grid = grid_of(ROTTERDAM / "sar_masked.tif")
    rng = np.random.default_rng(0)
    prediction = rng.integers(0, 6, grid.shape).astype(np.uint8)
    reference = np.where(rng.random(grid.shape) < 0.3, prediction, rng.integers(0, 6, grid.shape)).astype(np.uint8)
    paths = {}
    for name, values in (("prediction", prediction), ("reference", reference)):
        for how, transform in (("original", grid.transform), ("rotated", grid.transform * Affine.rotation(30))):
            paths[name, how] = tmp_path / f"{name}_{how}.tif"
            with rasterio.open(paths[name, how], "w", driver="GTiff", width=grid.width, height=grid.height, count=1,
                               dtype="uint8", crs=Grid(grid.crs_wkt, transform, 1, 1).crs, transform=transform,
                               nodata=255) as dst:
                dst.write(values[None])
    scores = {how: cli_json("evaluate", "--prediction", paths["prediction", how], "--reference",
                            paths["reference", how]) for how in ("original", "rotated")}
    assert scores["rotated"]["pixels"] == scores["original"]["pixels"] == grid.width * grid.height
    assert scores["rotated"]["oa"] == pytest.approx(scores["original"]["oa"])


def test_a_local_engineering_crs_is_refused_with_the_remedy(tmp_path, capsys):
    # before: water areas 10^10 times too large (exit 0), or a raw PROJ message cut mid-WKT (exit 3)
    local = tmp_path / "site grid.tif"
    with rasterio.open(ROTTERDAM / "sar_masked.tif") as src:
        profile, data = src.profile, src.read()
    wkt = 'LOCAL_CS["Site grid",UNIT["metre",1],AXIS["Easting",EAST],AXIS["Northing",NORTH]]'
    with rasterio.open(local, "w", **dict(profile, crs=rasterio.crs.CRS.from_wkt(wkt))) as dst:
        dst.write(data)
    for args in (("water", "--sar", local), ("segment", "--optical", ROTTERDAM / "rgb_unmasked.tif", "--sar", local)):
        out = tmp_path / args[0]
        code = main([str(a) for a in args] + ["--out", str(out), "--device", "cpu"])
        line = capsys.readouterr().err.strip().splitlines()[-1]
        assert code == 2 and line.startswith(f"error: {local}: its CRS ('Site grid') is a local (engineering) CRS")
        assert "gdal_edit.py -a_srs EPSG:<code>" in line and not out.exists()


def test_gdal_dataset_names_and_netcdf_subdatasets_say_to_extract_them(tmp_path, capsys):
    # before: "optical input /vsizip/... does not exist", and "has 0 band(s) ... choose --sar-bands"
    from osgeo import gdal

    netcdf = tmp_path / "pair.nc"
    gdal.Translate(str(netcdf), str(NIGERIA), format="netCDF")
    code = main(["water", "--sar", str(netcdf), "--out", str(tmp_path / "a"), "--device", "cpu"])
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and f"{netcdf}: holds no raster band of its own but 2 subdataset(s)" in line, line
    assert "gdal_translate 'netcdf:" in line and not (tmp_path / "a").exists()
    for name in (f'NETCDF:"{netcdf}":Band1', f"/vsizip/{tmp_path}/pair.zip/rgb.tif"):
        code = main(["segment", "--optical", name, "--sar", str(ROTTERDAM / "sar_masked.tif"), "--out",
                     str(tmp_path / "b")])
        line = capsys.readouterr().err.strip().splitlines()[-1]
        assert code == 2 and line.startswith(f"error: {name}: a GDAL virtual path or subdataset name; the commands "
                                             f"read plain files: extract it first (unzip; gdal_translate '{name}' "
                                             "extracted.tif for a raster"), line
    pair = [str(ROTTERDAM / "rgb_unmasked.tif"), "--sar", str(ROTTERDAM / "sar_masked.tif")]
    assert main(["segment", "--optical", *pair, "--out", str(tmp_path / "c"), "--aoi",
                 "592700,5749600,592800,5749700,EPSG:32631", "--device", "cpu", "--quiet"]) == 0  # a CRS is no dataset
