"""Property-based tests: random shapes, dtypes, nodata layouts, band counts and grids fed to
preprocessing, tiling, alignment and rasterisation. Each call must give a result that keeps its
promises or a documented error (``ValueError``: one line, naming the file), and never leave a
temporary file behind.

Deterministic (``derandomize=True``) and bounded (``max_examples``) so the file runs in well
under a minute.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from engine.config import ClassSchema, OpticalPreprocessConfig, SarPreprocessConfig
from engine.data.raster_ops import align_pair, preprocess_raster
from engine.inference.tiling import plan_tiles
from engine.raster.grid import Grid, default_grid, read_on_grid
from engine.raster.labels import rasterize_labels

set_hypothesis_home_dir(str(Path(tempfile.gettempdir()) / "sgcad-hypothesis"))  # not in the work tree
SETTINGS = settings(
    max_examples=25,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
DTYPES = ("uint8", "uint16", "int16", "float32", "float64")
LAYOUTS = ("none", "all", "random", "row", "column", "corner")


@st.composite
def rasters(draw, max_size: int = 40):
    """(array (C, H, W), dtype, nodata, CRS, transform) of a small random raster."""
    width = draw(st.integers(1, max_size))
    height = draw(st.integers(1, max_size))
    count = draw(st.integers(1, 4))
    dtype = draw(st.sampled_from(DTYPES))
    kind = np.dtype(dtype).kind
    geographic = draw(st.booleans())
    res = draw(st.sampled_from((1e-4, 3e-4))) if geographic else draw(st.sampled_from((1.0, 2.5, 10.0, 30.0)))
    x0 = draw(st.sampled_from((4.5, 4.501))) if geographic else 590000.0 + draw(st.integers(-40, 40)) * 7.0
    y0 = draw(st.sampled_from((52.0, 52.001))) if geographic else 5760000.0 + draw(st.integers(-40, 40)) * 7.0
    crs = "EPSG:4326" if geographic else "EPSG:32631"
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    if kind == "f":
        scale = draw(st.sampled_from((1.0, 255.0, 10000.0, 1e-3)))
        data = (rng.gamma(1.5, 0.3, (count, height, width)) * scale).astype(dtype)
        if draw(st.booleans()):
            data = np.negative(data)  # dB-like values
    else:
        info = np.iinfo(dtype)
        data = rng.integers(max(info.min, -500), min(info.max, 3000), (count, height, width)).astype(dtype)
    nodata_choices = [None, 0] + ([float("nan")] if kind == "f" else []) + ([-9999] if kind in "if" else [])
    nodata = draw(st.sampled_from(nodata_choices))
    layout = draw(st.sampled_from(LAYOUTS))
    fill = np.nan if kind == "f" and (nodata is None or np.isnan(nodata)) else (nodata if nodata is not None else 0)
    mask = np.zeros((height, width), bool)
    if layout == "all":
        mask[:] = True
    elif layout == "random":
        mask = rng.random((height, width)) < 0.3
    elif layout == "row":
        mask[0] = True
    elif layout == "column":
        mask[:, -1] = True
    elif layout == "corner":
        mask[: height // 2, : width // 2] = True
    data[:, mask] = fill
    return data, dtype, nodata, crs, Affine(res, 0.0, x0, 0.0, -res, y0)


def _write(path: Path, raster) -> Path:
    data, dtype, nodata, crs, transform = raster
    profile = dict(driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0], dtype=dtype,
                   crs=crs, transform=transform, nodata=nodata)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def _documented(exc: BaseException, *paths: Path) -> None:
    """A documented error: a ValueError (engine.validate.SgcadError included), one line, not empty."""
    assert isinstance(exc, ValueError), f"undocumented {type(exc).__name__}: {exc}"
    text = str(exc)
    assert text and "\n" not in text and "Traceback" not in text, text


def _no_temporaries(folder: Path) -> None:
    left = [p.name for p in folder.iterdir() if p.name.startswith(".") or ".tmp" in p.name or ".part" in p.name]
    assert not left, f"temporary files left behind: {left}"


@SETTINGS
@given(raster=rasters(), sar=st.booleans(), lee=st.booleans(), normalise=st.booleans(), data=st.data())
def test_preprocessing_gives_unit_range_or_a_documented_error(raster, sar, lee, normalise, data):
    count = raster[0].shape[0]
    bands = data.draw(st.lists(st.integers(1, count + 1), min_size=1, max_size=3), label="bands")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        src = _write(folder / "in.tif", raster)
        out = folder / "out.tif"
        cfg = (SarPreprocessConfig(lee_filter=lee, lee_window=3, normalization="scene", robust_normalize=normalise)
               if sar else OpticalPreprocessConfig(robust_normalize=normalise))
        try:
            result = preprocess_raster(src, out, bands, cfg, block=16)
        except Exception as exc:  # noqa: BLE001 - the property: only documented errors
            _documented(exc, src)
            assert not out.exists()
        else:
            assert max(bands) <= count
            with rasterio.open(result["output"]) as dst:
                values = dst.read()
                assert dst.count == len(bands) and dst.shape == raster[0].shape[1:]
                assert dst.transform == raster[4]
            finite = values[np.isfinite(values)]
            if normalise and finite.size:
                assert finite.min() >= -1e-6 and finite.max() <= 1 + 1e-6
        _no_temporaries(folder)


@SETTINGS
@given(
    width=st.integers(-2, 3000),
    height=st.integers(-2, 3000),
    tile=st.integers(0, 600),
    overlap=st.integers(-4, 300),
)
def test_tiling_covers_every_pixel_or_refuses(width, height, tile, overlap):
    try:
        plan = plan_tiles(width, height, tile, overlap)
    except Exception as exc:  # noqa: BLE001
        _documented(exc)
        assert width < 1 or height < 1 or tile < 16 or overlap < 0 or 2 * overlap >= tile
        return
    covered = np.zeros((height, width), bool)
    for t in plan.tiles:
        assert 0 <= t.x0 and 0 <= t.y0 and t.x0 + t.width <= width and t.y0 + t.height <= height
        covered[t.y0 : t.y0 + t.height, t.x0 : t.x0 + t.width] = True
    assert covered.all()


@SETTINGS
@given(optical=rasters(max_size=24), sar=rasters(max_size=24), resolution=st.sampled_from((None, 5.0, 40.0)))
def test_alignment_gives_the_common_grid_or_a_documented_error(optical, sar, resolution):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        o, s = _write(folder / "optical.tif", optical), _write(folder / "sar.tif", sar)
        try:
            grid = default_grid(o, s, resolution=resolution)
        except Exception as exc:  # noqa: BLE001
            _documented(exc, o, s)
            return
        assert grid.width >= 1 and grid.height >= 1 and grid.crs.is_projected
        for path, raster in ((o, optical), (s, sar)):
            bands = list(range(1, raster[0].shape[0] + 1))
            values = read_on_grid(path, bands, grid)
            assert values.shape == (len(bands), grid.height, grid.width) and values.dtype == np.float32
        try:
            result = align_pair(o, s, folder / "o_al.tif", folder / "s_al.tif", resolution=resolution, block=16)
        except Exception as exc:  # noqa: BLE001
            _documented(exc, o, s)  # e.g. no valid pixel of a band on the common grid
            assert not (folder / "o_al.tif").exists() and not (folder / "s_al.tif").exists()
        else:
            assert (result["width"], result["height"]) == (grid.width, grid.height)
        _no_temporaries(folder)


@st.composite
def boxes(draw):
    n = draw(st.integers(0, 6))
    out = []
    for _ in range(n):
        x, y = draw(st.integers(-20, 60)), draw(st.integers(-20, 60))
        w, h = draw(st.integers(0, 30)), draw(st.integers(0, 30))
        value = draw(st.one_of(st.integers(-2, 8), st.sampled_from(("water", "forest", "lava", "", None))))
        out.append((x, y, w, h, value))
    return out


def _write_polygons(path: Path, shapes, crs: str = "EPSG:32631", x0: float = 590000.0, y0: float = 5760000.0):
    from osgeo import ogr, osr

    srs = osr.SpatialReference()
    srs.SetFromUserInput(crs)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    layer = ds.CreateLayer("labels", srs, ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("class", ogr.OFTString))
    for x, y, w, h, value in shapes:
        ring = ogr.Geometry(ogr.wkbLinearRing)
        for px, py in ((x, y), (x + w, y), (x + w, y + h), (x, y + h), (x, y)):
            ring.AddPoint_2D(x0 + px * 2.0, y0 - py * 2.0)
        poly = ogr.Geometry(ogr.wkbPolygon)
        poly.AddGeometry(ring)
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetGeometry(poly)
        if value is not None:
            feature.SetField("class", str(value))
        layer.CreateFeature(feature)
    ds = None


@SETTINGS
@given(shapes=boxes(), width=st.integers(1, 50), height=st.integers(1, 50), res=st.sampled_from((1.0, 2.0, 7.0)))
def test_rasterisation_gives_class_ids_or_a_documented_error(shapes, width, height, res):
    schema = ClassSchema()
    grid = Grid(rasterio.crs.CRS.from_epsg(32631).to_wkt(), Affine(res, 0, 590000.0, 0, -res, 5760000.0), width, height)
    with tempfile.TemporaryDirectory() as tmp:
        vector = Path(tmp) / "labels.gpkg"
        _write_polygons(vector, shapes)
        try:
            labels, report = rasterize_labels(vector, "class", grid, schema)
        except Exception as exc:  # noqa: BLE001
            _documented(exc, vector)
            return
        assert labels.shape == (height, width) and labels.dtype == np.uint8
        assert set(np.unique(labels)) <= set(schema.ids) | {schema.ignore_index}
        assert report["labelled_pixels"] == int((labels != schema.ignore_index).sum()) > 0


@pytest.mark.parametrize("size", [1, 2, 5])
def test_tiny_rasters_preprocess_without_crashing(tmp_path, size):
    """The smallest rasters (down to 1 x 1) go through the whole SAR chain."""
    data = np.full((1, size, size), 0.05, np.float32)
    src = _write(tmp_path / "tiny.tif", (data, "float32", None, "EPSG:32631", Affine(10, 0, 590000, 0, -10, 5760000)))
    try:
        preprocess_raster(src, tmp_path / "out.tif", [1], SarPreprocessConfig(normalization="scene"))
    except Exception as exc:  # noqa: BLE001
        _documented(exc, src)
