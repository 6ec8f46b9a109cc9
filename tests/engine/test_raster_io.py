"""Windows, NaN-for-nodata reads and atomic outputs (engine.raster.io)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window

from engine.progress import Canceled
from engine.raster.grid import Grid, grid_of
from engine.raster.io import atomic_output, iter_windows, open_writer, read_bands, write_raster

ROOT = Path(__file__).resolve().parents[2]


def _grid(width=300, height=200):
    return Grid(CRS.from_epsg(32631).to_wkt(), Affine(10, 0, 500000, 0, -10, 5000000), width, height)


def test_windows_tile_the_raster_once_and_halos_pad_every_side():
    cover = np.zeros((203, 517), np.int32)
    for window, padded in iter_windows(517, 203, 64, halo=3):
        c, r, w, h = int(window.col_off), int(window.row_off), int(window.width), int(window.height)
        cover[r : r + h, c : c + w] += 1
        assert (padded.col_off, padded.row_off, padded.width, padded.height) == (c - 3, r - 3, w + 6, h + 6)
    assert (cover == 1).all()
    with pytest.raises(ValueError, match="block must be positive"):
        list(iter_windows(10, 10, 0))


def test_landsat_collar_reads_as_nan_and_windows_outside_are_nan(shared_data):
    path = shared_data / "landsat_rgb" / "RGB.byte.tif"
    data = read_bands(path, [1, 2, 3])
    with rasterio.open(path) as src:
        raw = src.read()
    assert data.dtype == np.float32 and data.shape == (3, 718, 791)
    assert np.array_equal(np.isnan(data), raw == 0)  # nodata=0 becomes NaN, band by band
    assert 0.25 < np.isnan(data[0]).mean() < 0.4
    assert np.array_equal(data[~np.isnan(data)], raw[raw != 0].astype(np.float32))
    part = read_bands(path, [2], Window(-5, 700, 20, 30))  # reaches past the left and bottom edges
    assert np.isnan(part[:, :, :5]).all() and np.isnan(part[:, 18:, :]).all()
    np.testing.assert_array_equal(part[0, :18, 5:], data[1, 700:718, 0:15])
    with pytest.raises(ValueError, match=r"RGB.byte.tif: band 4 does not exist; the raster has 3"):
        read_bands(path, [1, 4])


def test_write_read_round_trip_keeps_grid_nodata_and_band_names(tmp_path):
    grid = _grid()
    arr = np.random.default_rng(0).normal(size=(2, 200, 300)).astype(np.float32)
    arr[:, :10] = np.nan
    out = write_raster(tmp_path / "a.tif", arr, grid, nodata=float("nan"), band_names=["vv", "vh"])
    assert grid_of(out).same_as(grid)
    np.testing.assert_array_equal(read_bands(out, [1, 2]), arr)
    with rasterio.open(out) as src:
        assert src.descriptions == ("vv", "vh")
    with pytest.raises(ValueError, match="output exists"):
        write_raster(out, arr, grid)
    write_raster(out, arr[:1] * 0, grid, overwrite=True)
    assert np.nanmax(np.abs(read_bands(out, [1]))) == 0
    with pytest.raises(ValueError, match="does not match the grid"):
        write_raster(tmp_path / "b.tif", arr[:, :5], grid)


def test_failed_or_canceled_writes_leave_nothing_behind(tmp_path):
    grid = _grid(512, 512)
    with pytest.raises(Canceled):
        with open_writer(tmp_path / "c.tif", grid, 1, "uint8", 255) as dst:
            dst.write(np.ones((1, 256, 256), np.uint8), window=Window(0, 0, 256, 256))
            raise Canceled("stop")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_output(tmp_path / "d.gpkg") as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="output folder .* does not exist"):
        with atomic_output(tmp_path / "missing" / "e.tif"):
            pass


def test_rasters_without_georeferencing_are_refused(tmp_path):
    path = tmp_path / "plain.tif"
    with pytest.warns(NotGeoreferencedWarning):
        with rasterio.open(path, "w", driver="GTiff", width=8, height=8, count=1, dtype="uint8") as dst:
            dst.write(np.zeros((1, 8, 8), np.uint8))
        with pytest.raises(ValueError, match="plain.tif: no georeferencing"):
            grid_of(path)


def test_a_raster_placed_by_control_points_only_is_told_to_be_warped(shared_data, tmp_path):
    # a raw Sentinel-1 GRD measurement file: amplitude numbers placed by ground control points, no map grid;
    # QGIS shows it warped on the fly, and the Georeferencer is not the remedy: warping is, and it works
    import subprocess

    from rasterio.control import GroundControlPoint

    from engine.validate import SgcadError, check_georeferenced

    chip = shared_data / "sen1floods11_s1" / "Nigeria_812045_S1Hand.tif"
    with rasterio.open(chip) as src:
        vv, t = src.read(1), src.transform
    amplitude = np.sqrt(10 ** (np.nan_to_num(vv, nan=-30.0) / 10) * 2e5).astype(np.uint16)
    corners = [GroundControlPoint(row=r, col=c, x=(t * (c, r))[0], y=(t * (c, r))[1])
               for r in (0, 512) for c in (0, 512)]
    path = tmp_path / "s1a-iw-grd-vv-measurement.tiff"
    with pytest.warns(NotGeoreferencedWarning):
        with rasterio.open(path, "w", driver="GTiff", width=512, height=512, count=1, dtype="uint16") as dst:
            dst.write(amplitude[None])
            dst.gcps = (corners, CRS.from_epsg(4326))
        for check in (grid_of, check_georeferenced):
            with pytest.raises((ValueError, SgcadError), match="placed by 4 ground control points only.*gdalwarp"):
                check(path)
    subprocess.run(["gdalwarp", "-q", "-t_srs", "EPSG:4326", str(path), str(tmp_path / "warped.tif")], check=True)
    warped = grid_of(tmp_path / "warped.tif")
    assert abs(warped.transform.a - t.a) < 0.05 * t.a and warped.crs.to_epsg() == 4326


def test_alpha_bands_and_dataset_masks_read_as_nan_on_and_off_the_grid(shared_data, tmp_path):
    # drone orthophotos and QGIS's rendered exports mark "no image" with an alpha band, other products with
    # a mask band; both say no data as a nodata value does: every read (direct and warped) gives NaN there
    from engine.inputs.contract import InputRecipe, resolve_inputs
    from engine.models.checkpoint import read_metadata
    from engine.raster.grid import read_on_grid

    rgb = ROOT / "resources" / "sample" / "rotterdam" / "rgb_unmasked.tif"  # real SpaceNet 6 pixels
    with rasterio.open(rgb) as src:
        profile, data = src.profile, src.read()
    gone = np.zeros(data.shape[1:], bool)
    gone[:, :50] = True
    alpha_path, mask_path = tmp_path / "rgba.tif", tmp_path / "masked.tif"
    with rasterio.open(alpha_path, "w", **dict(profile, count=4, photometric="RGB", alpha="YES")) as dst:
        dst.write(np.concatenate([data, np.where(gone, 0, 255).astype(np.uint8)[None]]))
    with rasterio.open(mask_path, "w", **profile) as dst:
        dst.write(data)
        dst.write_mask(np.where(gone, 0, 255).astype(np.uint8))
    for path in (alpha_path, mask_path):
        own = grid_of(path)
        direct = read_on_grid(path, [1, 2, 3], own)
        assert np.isnan(direct[:, gone]).all() and np.isfinite(direct[:, ~gone]).all()
        coarser = Grid(own.crs_wkt, own.transform * Affine.scale(2.0), own.width // 2, own.height // 2)
        warped = read_on_grid(path, [1, 2, 3], coarser)
        assert np.isnan(warped[:, :, :24]).all() and np.isfinite(warped[:, :, 26:]).all()
    # the optical statistics count only the image's pixels (30,000 of 40,000)
    student = ROOT / "resources" / "models" / "sgcad_student.safetensors"
    sar = rgb.with_name("sar_masked.tif")
    resolved = resolve_inputs(InputRecipe.of(read_metadata(student)), alpha_path, sar)
    assert max(b["n"] for b in resolved.stats["optical"]["bands"]) == 30000
