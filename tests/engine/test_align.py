"""Common grids and on-the-fly alignment on every real raster in ../shared/data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.warp import Resampling, calculate_default_transform, reproject
from rasterio.windows import Window

from engine.data.raster_ops import align_pair
from engine.raster.grid import Grid, default_grid, grid_of, read_on_grid
from engine.raster.io import read_bands, write_raster
from engine.raster.stack import stack_bands

ROOT = Path(__file__).resolve().parents[2]
S2_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")


def _bigearthnet(shared_data: Path):
    """(S2 folder, S1 VV, S1 VH) for each of the three pairs."""
    pairs = []
    for s2 in sorted((shared_data / "bigearthnet" / "BigEarthNet-S2-Example").iterdir()):
        tag = "_".join(s2.name.split("_")[-2:])
        s1 = next(p for p in (shared_data / "bigearthnet" / "BigEarthNet-S1-Example").iterdir()
                  if p.name.endswith(tag))
        pairs.append((s2, next(s1.glob("*_VV.tif")), next(s1.glob("*_VH.tif"))))
    assert len(pairs) == 3
    return pairs


def test_spacenet_pair_lands_on_the_sar_grid_with_its_nan_footprint(shared_data, tmp_path):
    folder = shared_data / "spacenet6_rotterdam"
    optical, sar = folder / "rgb_unmasked.tif", folder / "sar_masked.tif"
    grid = default_grid(optical, sar)
    assert grid.same_as(grid_of(sar)) and grid.crs.to_epsg() == 32631  # SAR resolution, snapped
    sar_on = read_on_grid(sar, [1, 2, 3, 4], grid)
    np.testing.assert_array_equal(sar_on, read_bands(sar, [1, 2, 3, 4]))  # no resampling of the SAR
    assert abs(np.isnan(sar_on).mean() - 0.3915) < 1e-3
    opt = read_on_grid(optical, [3, 2, 1], grid)  # bands in the order the user asks
    assert opt.shape == (3, 200, 200) and np.isfinite(opt).all()
    assert 0 <= opt.min() and opt.max() <= 255
    # a window (with a halo reaching outside the grid) equals the same part of the whole read
    part = read_on_grid(optical, [3, 2, 1], grid, Window(-4, 150, 60, 60))
    assert np.isnan(part[:, :, :4]).all() and np.isnan(part[:, 50:]).all()
    np.testing.assert_allclose(part[:, :50, 4:], opt[:, 150:200, 0:56], atol=1e-3)

    result = align_pair(optical, sar, tmp_path / "o.tif", tmp_path / "s.tif", sar_bands=[4, 1])
    assert result["width"] == 200 and grid_of(tmp_path / "o.tif").same_as(grid_of(tmp_path / "s.tif"))
    np.testing.assert_array_equal(read_bands(tmp_path / "s.tif", [1, 2]), sar_on[[3, 0]])
    with pytest.raises(ValueError, match=r"sar_masked.tif: band 5 does not exist; the raster has 4"):
        read_on_grid(sar, [5], grid)


def test_bigearthnet_bands_at_three_resolutions_stack_on_the_10m_grid(shared_data, tmp_path):
    for k, (s2, vv, vh) in enumerate(_bigearthnet(shared_data)):
        b02 = next(s2.glob("*_B02.tif"))
        grid = default_grid(b02, vv)
        assert (grid.width, grid.height, grid.res) == (120, 120, (10.0, 10.0)) and grid.same_as(grid_of(vv))
        sources = [(next(s2.glob(f"*_{b}.tif")), 1) for b in S2_BANDS]
        out = tmp_path / f"s2_{k}.tif"
        result = stack_bands(sources, out)
        assert grid_of(out).same_as(grid) and len(result["bands"]) == 12
        stacked = read_bands(out, list(range(1, 13)))
        assert np.isfinite(stacked).all()
        for i, (path, _) in enumerate(sources):
            native = read_bands(path, [1])[0]
            if grid_of(path).res[0] == 10:  # 10 m bands pass through unchanged
                np.testing.assert_array_equal(stacked[i], native)
            else:  # 20 m and 60 m bands are interpolated: same mean, values within the source range
                assert abs(stacked[i].mean() / native.mean() - 1) < 0.02
                assert native.min() - 1 <= stacked[i].min() and stacked[i].max() <= native.max() + 1
        s1 = read_on_grid(vv, [1], grid)
        assert np.isfinite(s1).all() and -30 < np.median(s1) < 0  # Sentinel-1 VV in dB
        assert np.median(read_on_grid(vh, [1], grid)) < np.median(s1)  # cross-pol is darker
    with pytest.raises(ValueError, match=r"120x120 pixels .* smaller than the 256x256"):
        default_grid(b02, vv, min_size=256)


def test_landsat_in_another_crs_and_a_geographic_sar(shared_data, tmp_path):
    landsat = shared_data / "landsat_rgb" / "RGB.byte.tif"
    # A "SAR" in geographic coordinates: the Landsat red band warped to EPSG:4326.
    with rasterio.open(landsat) as src:
        t, w, h = calculate_default_transform(src.crs, "EPSG:4326", src.width, src.height, *src.bounds)
        geo = np.full((h, w), np.nan, np.float32)
        reproject(src.read(1).astype(np.float32), geo, src_transform=src.transform, src_crs=src.crs,
                  src_nodata=0, dst_transform=t, dst_crs="EPSG:4326", dst_nodata=np.nan,
                  resampling=Resampling.nearest)
    write_raster(tmp_path / "geo.tif", geo, Grid(rasterio.crs.CRS.from_epsg(4326).to_wkt(), t, w, h),
                 nodata=float("nan"))
    grid = default_grid(landsat, tmp_path / "geo.tif")
    assert grid.crs.to_epsg() == 32618 and 250 < grid.res[0] < 350  # optical CRS, SAR resolution in metres
    swapped = default_grid(tmp_path / "geo.tif", landsat)
    assert swapped.crs.to_epsg() == 32618 and abs(swapped.res[0] - 300.04) < 0.1  # UTM zone of the centre
    rgb = read_on_grid(landsat, [1, 2, 3], grid)
    valid = np.isfinite(rgb).all(axis=0)
    assert 0.25 < 1 - valid.mean() < 0.45  # the nodata collar stays nodata
    assert np.nanmin(rgb) >= 0 and np.nanmax(rgb) <= 255
    nearest = read_on_grid(landsat, [1], grid, resampling="nearest")  # as for labels: no new values
    source_values = set(np.unique(read_bands(landsat, [1])).tolist())
    assert set(np.unique(nearest[np.isfinite(nearest)]).tolist()) <= source_values
    box = grid.bounds
    small = default_grid(landsat, tmp_path / "geo.tif", resolution=1000,
                         bounds=(box[0], box[1], box[0] + 50_000, box[1] + 40_000))
    assert (small.width, small.height, small.res) == (50, 40, (1000.0, 1000.0))


def test_alignment_errors_name_the_files(shared_data, tmp_path):
    spacenet = shared_data / "spacenet6_rotterdam"
    landsat = shared_data / "landsat_rgb" / "RGB.byte.tif"
    with pytest.raises(ValueError, match=r"RGB.byte.tif and .*sar_masked.tif do not overlap"):
        default_grid(landsat, spacenet / "sar_masked.tif")
    with pytest.raises(ValueError, match="not projected"):
        default_grid(spacenet / "rgb_unmasked.tif", spacenet / "sar_masked.tif", crs="EPSG:4326")
    empty = tmp_path / "empty.tif"
    write_raster(empty, np.full((1, 200, 200), np.nan, np.float32), grid_of(spacenet / "sar_masked.tif"),
                 nodata=float("nan"))
    with pytest.raises(ValueError, match=r"empty.tif: the SAR bands \[1\] hold no valid pixel"):
        align_pair(spacenet / "rgb_unmasked.tif", empty, tmp_path / "o.tif", tmp_path / "s.tif")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.tif"]  # no half-written outputs


def test_stack_command_runs_as_written(shared_data, tmp_path):
    s2 = _bigearthnet(shared_data)[0][0]
    args = [str(next(s2.glob(f"*_{b}.tif"))) + ":1" for b in ("B04", "B03", "B02", "B11")]
    out = subprocess.run([sys.executable, "-m", "engine", "stack", *args, "--output", str(tmp_path / "x.tif"),
                          "--json"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["width"] == 120 and result["res"] == [10.0, 10.0] and len(result["bands"]) == 4


def test_an_aligned_pair_reads_as_its_sources_read(shared_data, tmp_path):
    """Band roles, units and polarisations survive alignment. Generic names (``optical_b4``) read
    as "Sentinel-2 band 4, red" and made the near infrared of a blue, green, red, NIR raster red."""
    from engine.inputs.contract import InputRecipe, resolve_inputs
    from engine.models.checkpoint import read_metadata

    recipe = InputRecipe.of(read_metadata(ROOT / "resources" / "models" / "sgcad_student.safetensors"))
    s2, vv, vh = _bigearthnet(shared_data)[0]
    named = tmp_path / "s2_named.tif"  # Sentinel-2 band files stacked: the names say which band is red
    stack_bands([(next(s2.glob(f"*_{b}.tif")), 1) for b in S2_BANDS], named)
    sar = tmp_path / "vh_vv.tif"
    stack_bands([(vh, 1), (vv, 1)], sar)  # VH first: the names say which band is co-polarised
    unnamed = tmp_path / "bgrn.tif"  # blue, green, red, NIR as bands 1-4 with nothing said: read as 1, 2, 3
    write_raster(unnamed, read_bands(named, [2, 3, 4, 8]), grid_of(named))
    rgba = tmp_path / "rgba.tif"  # an 8-bit picture with an alpha band
    rgb = shared_data / "spacenet6_rotterdam" / "rgb_unmasked.tif"
    with rasterio.open(rgb) as src:
        profile = dict(src.profile, count=4, photometric="RGB", alpha="YES")
        picture, rgba_grid = src.read(), grid_of(rgb)
    with rasterio.open(rgba, "w", **profile) as dst:
        dst.write(np.concatenate([picture, np.full_like(picture[:1], 255)]))
    for k, optical in enumerate((named, unnamed)):
        out_o, out_s = tmp_path / f"o{k}.tif", tmp_path / f"s{k}.tif"
        align_pair(optical, sar, out_o, out_s, resolution=20.0)  # resampled, not copied
        before, after = resolve_inputs(recipe, optical, sar), resolve_inputs(recipe, out_o, out_s)
        assert after.bands == before.bands and after.bands.sar_bands == (2,)  # VV: band 2
        assert after.optical_units.units == before.optical_units.units == "reflectance10000"
        assert after.sar_units.units == before.sar_units.units == "db"
        with rasterio.open(out_s) as src:
            assert src.descriptions == (f"{vh.stem}_b1", f"{vv.stem}_b1") and src.tags()["source"] == "vh_vv.tif"
    assert before.bands.optical_bands == (1, 2, 3)  # unnamed: the convention, not the NIR as red
    align_pair(rgba, shared_data / "spacenet6_rotterdam" / "sar_masked.tif", tmp_path / "po.tif",
               tmp_path / "ps.tif")
    with rasterio.open(tmp_path / "po.tif") as src:  # the alpha band is the mask (NaN), not a fourth colour
        assert src.count == 3 and [c.name for c in src.colorinterp] == ["red", "green", "blue"]
        assert grid_of(tmp_path / "po.tif").same_as(grid_of(tmp_path / "ps.tif")) and rgba_grid.crs == src.crs


def test_stacked_bands_are_named_as_their_sources_name_them(shared_data, tmp_path):
    """A band's own name goes along (India's VV, VH); band k of an unnamed multi-band file is
    ``..._band<k>``, not ``..._b<k>``, which reads as Sentinel-2 band k (``_b4``: red)."""
    from engine.inputs.contract import InputRecipe, resolve_inputs
    from engine.models.checkpoint import read_metadata

    india = shared_data / "sen1floods11_s1" / "India_900498_S1Hand.tif"
    result = stack_bands([(india, 2), (india, 1)], tmp_path / "vh_vv.tif")
    assert result["bands"] == ["VH", "VV"]
    s2, vv, _ = _bigearthnet(shared_data)[0]
    bgrn = tmp_path / "bgrn.tif"  # blue, green, red, NIR, nothing said
    files = [next(s2.glob(f"*_{b}.tif")) for b in ("B02", "B03", "B04", "B08")]
    write_raster(bgrn, np.stack([read_bands(f, [1])[0] for f in files]), grid_of(vv))
    out = tmp_path / "stacked.tif"
    assert stack_bands([(bgrn, b) for b in (1, 2, 3, 4)], out)["bands"] == [f"bgrn_band{b}" for b in (1, 2, 3, 4)]
    recipe = InputRecipe.of(read_metadata(ROOT / "resources" / "models" / "sgcad_student.safetensors"))
    assert resolve_inputs(recipe, out, vv).bands.optical_bands == (1, 2, 3)  # as the source: unnamed, by convention
