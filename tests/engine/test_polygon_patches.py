"""Patch windows around user polygons: placement on the grid, CRS handling, leakage-free split."""

from __future__ import annotations

import pytest
from affine import Affine
from osgeo import ogr, osr
from rasterio.crs import CRS

from engine.raster.grid import Grid
from engine.train.polygon_patches import polygon_boxes, split_windows, windows_around

GRID = Grid(CRS.from_epsg(32631).to_wkt(), Affine(2.0, 0, 590000.0, 0, -2.0, 5760000.0), 300, 200)


def test_windows_cover_each_polygon_and_stay_on_the_grid():
    small = (100.0, 50.0, 110.0, 70.0)  # 10 x 20 pixels: one window centred on it
    wide = (0.0, 120.0, 150.0, 130.0)  # 150 pixels wide: three 64-pixel windows, clipped to the grid
    edge = (290.0, 190.0, 299.0, 199.0)  # in the corner: the window is pushed inside
    outside = (1000.0, 1000.0, 1010.0, 1010.0)
    windows = windows_around([small, wide, edge, outside], GRID, 64)
    assert (73, 28, 64, 64) in windows  # centre (105, 60) minus 32
    assert [w for w in windows if w[1] == 93] == [(0, 93, 64, 64), (43, 93, 64, 64), (107, 93, 64, 64)]
    assert (236, 136, 64, 64) in windows
    for col, row, w, h in windows:
        assert 0 <= col and col + w <= GRID.width and 0 <= row and row + h <= GRID.height
    with pytest.raises(ValueError, match="none of the polygons lies on the imagery"):
        windows_around([outside], GRID, 64)
    with pytest.raises(ValueError, match="smaller than one 256-pixel patch"):
        windows_around([small], GRID, 256)


def test_split_keeps_overlapping_windows_together_and_holds_out_a_group():
    group_a = [(0, 0, 64, 64), (32, 0, 64, 64), (64, 0, 64, 64)]  # a chain of overlaps
    group_b = [(200, 100, 64, 64)]
    group_c = [(100, 130, 64, 64)]
    split = split_windows(group_a + group_b + group_c, val_fraction=0.2, seed=1)
    assert not split["shared"] and split["val"] and split["train"]
    for name in ("train", "val"):
        inside = set(split[name])
        assert set(group_a) <= inside or not set(group_a) & inside  # never cut through a group
    assert sorted(split["train"] + split["val"]) == sorted(group_a + group_b + group_c)
    single = split_windows(group_a, 0.5)
    assert single["shared"] and single["val"] == single["train"] == group_a


def test_polygon_boxes_are_reprojected_to_the_grid(tmp_path):
    path = tmp_path / "drawn.gpkg"
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(4326)
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    layer = ds.CreateLayer("labels", srs=srs, geom_type=ogr.wkbPolygon)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    to_wgs84 = osr.CoordinateTransformation(_utm(), srs)
    ring = ogr.Geometry(ogr.wkbLinearRing)
    for x, y in (
        (590100, 5759900),
        (590140, 5759900),
        (590140, 5759860),
        (590100, 5759860),
        (590100, 5759900),
    ):
        lon, lat, _ = to_wgs84.TransformPoint(x, y)
        ring.AddPoint_2D(lon, lat)
    polygon = ogr.Geometry(ogr.wkbPolygon)
    polygon.AddGeometry(ring)
    feature = ogr.Feature(layer.GetLayerDefn())
    feature.SetGeometry(polygon)
    layer.CreateFeature(feature)
    ds = None
    ((x0, y0, x1, y1),) = polygon_boxes(path, GRID)
    assert (x0, y0, x1, y1) == pytest.approx((50, 50, 70, 70), abs=0.05)


def _utm():
    srs = osr.SpatialReference(wkt=GRID.crs_wkt)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return srs
