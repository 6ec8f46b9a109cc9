"""Output grids and areas of interest that make no sense are refused up front, with the numbers.

From the qgis_process bad-input sweep: a mistyped pixel size (hours of work, gigabytes of
temporaries), an area of interest that covers no pixel (all-nodata outputs, exit 0) or has no
area (silently the whole scene), and a warning about a partial overlap for rasters that overlap
fully but are smaller than one tile. All on the bundled Rotterdam pair (200 x 200, 4.5 m).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import rasterio
from osgeo import ogr, osr
from rasterio.windows import Window

from engine.cli import main
from engine.inference.aoi import load_aoi
from engine.raster.grid import default_grid, grid_of
from engine.validate import SgcadError, check_pair_overlap

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "resources" / "sample" / "rotterdam"
OPTICAL, SAR = SAMPLE / "rgb_unmasked.tif", SAMPLE / "sar_masked.tif"
STUDENT = ROOT / "resources" / "models" / "sgcad_student.safetensors"


def cli(capsys, *args) -> tuple:
    """Run ``python -m engine`` in this process: (exit status, stdout, stderr)."""
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: ") and "Traceback" not in err and "ERROR 1:" not in err, err
    return lines[-1]


def nothing_in(folder: Path) -> None:
    """A refused run leaves no output, temporary or lock file behind."""
    assert not folder.exists() or not any(folder.rglob("*")), sorted(p.name for p in folder.rglob("*"))


def polygon_file(path: Path, wkts, kind=ogr.wkbPolygon) -> Path:
    """A GeoPackage in EPSG:32631 (the sample's CRS) with one feature per WKT."""
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32631)
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    layer = ds.CreateLayer("aoi", srs, kind)
    for wkt in wkts:
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetGeometry(ogr.CreateGeometryFromWkt(wkt))
        layer.CreateFeature(feature)
    del feature, layer  # before the data source: OGR frees them with it
    ds = None
    return path


def clip(src_path: Path, out: Path, col: int, row: int, size: int) -> Path:
    with rasterio.open(src_path) as src:
        window = Window(col, row, size, size)
        profile = dict(src.profile, width=size, height=size, transform=src.window_transform(window))
        profile.pop("blockxsize", None), profile.pop("blockysize", None), profile.pop("tiled", None)
        data = src.read(window=window)
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(data)
    return out


# --------------------------------------------------------------------------- output grid size (A1, A2)
def test_a_pixel_size_far_finer_than_the_inputs_is_refused_with_the_numbers():
    with pytest.raises(SgcadError) as info:
        default_grid(OPTICAL, SAR, resolution=0.001)
    message = str(info.value)
    assert "0.001 m (--resolution, RESOLUTION)" in message and "899940 x 899940 grid (8.1e+11 pixels)" in message
    assert "4.5 m pixels (200 x 200 over the same area)" in message
    assert "choose a pixel size of at least 0.09 m" in message
    grid = default_grid(OPTICAL, SAR, resolution=0.09)  # the figure offered passes (10^8 pixels at most)
    assert grid.width * grid.height <= 1e8 and grid.width == 9999
    assert default_grid(OPTICAL, SAR, resolution=0.45).width == 1999  # 10 x finer per axis: fine
    with pytest.raises(SgcadError, match="at least 0.09 m"):
        default_grid(OPTICAL, SAR, resolution=0.05)


def test_segment_and_align_refuse_a_tiny_resolution_before_writing_anything(capsys, tmp_path):
    out = tmp_path / "segment"
    code, _, err = cli(capsys, "segment", "--optical", OPTICAL, "--sar", SAR, "--model", STUDENT, "--out", out,
                       "--resolution", 0.001, "--device", "cpu", "--threads", 1, "--quiet")
    line = error_line(err)
    assert code == 2 and "899940 x 899940 grid" in line and "at least 0.09 m" in line
    nothing_in(out)
    out = tmp_path / "align"
    code, _, err = cli(capsys, "align", "--optical", OPTICAL, "--sar", SAR, "--out", out,
                       "--resolution", 0.001)
    line = error_line(err)
    assert code == 2 and "899940 x 899940 grid" in line and "at least 0.09 m" in line
    nothing_in(out)


def test_a_fine_pixel_size_is_judged_on_the_area_of_interest_not_the_whole_scene(capsys, tmp_path):
    """0.05 m is refused over the whole 900 m scene (see above), but a 6 m box at 0.05 m is about 120 x 120 pixels."""
    box = "592700,5749600,592706,5749606"
    out = tmp_path / "small"
    code, _, err = cli(capsys, "segment", "--optical", OPTICAL, "--sar", SAR, "--model", STUDENT, "--out", out,
                       "--resolution", 0.05, "--aoi", box, "--device", "cpu", "--threads", 1, "--quiet")
    assert code == 0, err
    with rasterio.open(out / "classes.tif") as classes:
        assert 120 <= classes.width <= 121 and 120 <= classes.height <= 121  # the box edges fall inside pixels
        assert classes.res == pytest.approx((0.05, 0.05))
    out = tmp_path / "whole"  # an area of interest as large as the scene is refused as the scene is
    code, _, err = cli(capsys, "segment", "--optical", OPTICAL, "--sar", SAR, "--model", STUDENT, "--out", out,
                       "--resolution", 0.05, "--aoi", "592000,5749000,594000,5751000", "--device", "cpu",
                       "--threads", 1, "--quiet")
    line = error_line(err)
    assert code == 2 and "at least 0.09 m" in line
    nothing_in(out)


# --------------------------------------------------------------------------- areas of interest (A8, A23, B4)
def test_an_aoi_polygon_covering_no_pixel_centre_is_refused(tmp_path):
    grid = grid_of(SAR)
    x, y = grid.transform * (100, 100)  # a pixel corner: a 1 m square there holds no pixel centre
    square = f"POLYGON(({x} {y},{x + 1} {y},{x + 1} {y - 1},{x} {y - 1},{x} {y}))"
    path = polygon_file(tmp_path / "subpixel.gpkg", [square])
    with pytest.raises(SgcadError) as info:
        load_aoi(str(path), grid)
    message = str(info.value)
    assert str(path) in message and "covers no pixel centre of the 4.5 m grid" in message
    assert "cover 1 m², one pixel 20.2 m²" in message
    cx, cy = grid.transform * (100.5, 100.5)  # the same square on a pixel centre is one pixel
    centred = f"POLYGON(({cx} {cy},{cx + 1} {cy},{cx + 1} {cy - 1},{cx} {cy - 1},{cx} {cy}))"
    area = load_aoi(str(polygon_file(tmp_path / "centred.gpkg", [centred])), grid)
    x0, y0, x1, y1 = area.pixel_window()
    assert area.mask(grid, x0, y0, x1 - x0, y1 - y0).sum() == 1


def test_segment_with_a_sub_pixel_aoi_exits_2_and_writes_nothing(capsys, tmp_path):
    grid = grid_of(SAR)
    x, y = grid.transform * (100, 100)
    path = polygon_file(tmp_path / "subpixel.gpkg", [f"POLYGON(({x} {y},{x + 1} {y},{x + 1} {y - 1},{x} {y})"
                                                     f")"])
    out = tmp_path / "out"
    code, _, err = cli(capsys, "segment", "--optical", OPTICAL, "--sar", SAR, "--model", STUDENT, "--out", out,
                       "--aoi", path, "--device", "cpu", "--threads", 1, "--quiet")
    assert code == 2 and "covers no pixel centre" in error_line(err)
    nothing_in(out)


@pytest.mark.parametrize("box, words", [
    ("592500,5749500,592500,5749500,EPSG:32631", "has zero width (x 592500 to 592500) and zero height (y 5749500"),
    ("592500,5749500,592600,5749500", "has zero height (y 5749500 to 5749500)"),
])
def test_a_flat_aoi_box_is_refused_not_ignored(box, words):
    with pytest.raises(SgcadError) as info:
        load_aoi(box, grid_of(SAR))
    assert words in str(info.value) and "leave the area of interest empty" in str(info.value)


def test_an_aoi_layer_without_polygons_says_what_it_holds(tmp_path, capfd):
    grid = grid_of(SAR)
    points = polygon_file(tmp_path / "points.gpkg", ["POINT(592500 5749500)", "POINT(592600 5749600)"], ogr.wkbPoint)
    with pytest.raises(SgcadError) as info:
        load_aoi(str(points), grid)
    assert f"AOI {points}: layer 'aoi' holds no polygon with an area (2 point(s))" in str(info.value)
    # a ring of three points and a bow tie: the first has no area, the second is made valid, quietly
    flat = "POLYGON((592500 5749500,592600 5749500,592500 5749500))"
    bow = "POLYGON((592400 5749400,592700 5749700,592700 5749400,592400 5749700,592400 5749400))"
    capfd.readouterr()
    area = load_aoi(str(polygon_file(tmp_path / "bow.gpkg", [flat, bow])), grid)
    assert abs(area.geometry.GetArea() - 2 * 150 * 300 / 2) < 1
    assert "TopologyException" not in capfd.readouterr().err
    with pytest.raises(SgcadError, match=r"\(1 polygon\(s\) without an area"):
        load_aoi(str(polygon_file(tmp_path / "flat.gpkg", [flat])), grid)


# --------------------------------------------------------------------------- overlap warning (B7)
def test_rasters_overlapping_fully_but_smaller_than_a_tile_get_no_overlap_warning(tmp_path):
    optical = clip(OPTICAL, tmp_path / "rgb20.tif", 90, 90, 20)
    sar = clip(SAR, tmp_path / "sar20.tif", 90, 90, 20)
    with rasterio.open(optical) as a, rasterio.open(sar) as b:
        assert a.res != b.res  # the pair's pixel sizes differ slightly: 19.99 pixels of overlap
    assert check_pair_overlap(optical, sar, grid_of(sar), 512) is None
    shifted = clip(OPTICAL, tmp_path / "rgb_shifted.tif", 100, 90, 20)  # half of the SAR clip only
    warning = check_pair_overlap(shifted, sar, grid_of(sar), 512)
    assert warning and "overlap on only 10x20 pixels" in warning and "50.0 % of the 20x20-pixel" in warning
