"""A synthetic before/after SAR pair with a known flood, for tests, demos and measurements.

One synthetic scene (:func:`engine.data.synthetic.generate_scene`) is the before date. The after
date floods a known area of it, in one of two ways (``flood``):

- ``"area"`` (default): a few smooth, compact regions (a seeded, strongly smoothed random field
  above a quantile, about ``flood_share`` of the scene) become open water: inside them every
  land pixel except buildings (city, village: an urban flood is not open water to a radar) gets
  calm-water backscatter for its incidence angle (``engine.data.sar_model``) with fresh
  speckle, blended into the scene through the SAR's point-spread function, so edge pixels mix
  water and land as real ones do. The optical image gets water reflectance there.
- ``"lakes"``: the scene is rendered again with a lower water level (``lake_threshold``), so
  lakes spread over the low ground around them: many thin flood rings, whose one-pixel edges
  are a large share of their area (a harder case for any method).

The truth is ``flooded after and not water before`` (``flood_truth.tif``). Two real dates
never share their speckle: each date is multiplied by its own unit-mean gamma speckle of
``date_looks`` looks (on top of the scene's ``looks``). To exercise the input contract the
dates are written in different units (before: linear power, after: dB), and with
``warp_before`` the before date is also resampled onto another grid (1.25 x the pixel size,
shifted by a third of a pixel).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Dict, Union

import numpy as np
from affine import Affine
from rasterio.warp import Resampling, reproject
from scipy import ndimage

from ..config import ClassSchema
from ..data import sar_model as sm
from ..data.synthetic import SyntheticScene, generate_scene
from ..progress import NULL_PROGRESS, Progress
from ..raster.grid import Grid, grid_of
from ..raster.io import read_bands, write_raster

PathLike = Union[str, Path]
FLOODS = ("area", "lakes")


def make_flood_pair(
    out_dir: PathLike,
    size: int = 512,
    seed: int = 1,
    flood: str = "area",
    flood_share: float = 0.15,
    before_lake: float = 2.1,
    after_lake: float = 1.3,
    looks: float = 8.0,
    date_looks: float = 8.0,
    resolution: float = 10.0,
    wind: float = 0.0,
    warp_before: bool = False,
    overwrite: bool = False,
    progress: Progress = NULL_PROGRESS,
    **options: Any,
) -> Dict[str, Any]:
    """Write a before/after pair and its flood truth into ``out_dir`` (module docstring).

    Files: ``before_sar.tif`` (linear sigma0), ``after_sar.tif`` (dB), ``before_optical.tif``,
    ``after_optical.tif``, ``before_label.tif``, ``after_label.tif`` (classes of each date) and
    ``flood_truth.tif`` (uint8: 1 flooded, 0 not, on the after grid).

    Args:
        out_dir: folder (created if missing).
        size, seed, resolution: the scene (pixels, seed, metres per pixel).
        flood: ``"area"`` (compact flooded regions) or ``"lakes"`` (a higher water level).
        flood_share: ``"area"``: share of the scene inside the flooded regions.
        before_lake: the scene's water level (higher = less water).
        after_lake: ``"lakes"``: the water level after the event (below ``before_lake``).
        looks: looks of the scene's own speckle, shared by both dates.
        date_looks: looks of each date's own speckle (0: none, the dates share their speckle).
        wind: share of the water roughened by wind (0: calm water).
        warp_before: write the before date on another grid.
        overwrite: replace existing files.
        progress: reporting and cancellation.
        **options: other :func:`~engine.data.synthetic.generate_scene` options (``sensor``,
            ``sar_confusers``, ``incidence`` ...).

    Returns:
        the paths, ``flood_fraction`` (flooded share of the scene), ``water_before`` and
        ``water_after`` (water shares of the two labels) and the settings.
    """
    if flood not in FLOODS:
        raise ValueError(f"flood must be one of {FLOODS}, got {flood!r}")
    if flood == "lakes" and after_lake >= before_lake:
        raise ValueError(f"after_lake ({after_lake}) must be below before_lake ({before_lake}) for a flood")
    if flood == "area" and not 0 < flood_share < 1:
        raise ValueError(f"flood_share must be between 0 and 1, got {flood_share}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    schema = ClassSchema()
    common = dict(size=size, seed=seed, looks=looks, resolution=resolution, write_vector=False, wind=wind,
                  overwrite=overwrite, **options)
    scenes = {"before": generate_scene(out / "scene_before", lake_threshold=before_lake,
                                       progress=progress.sub(0.0, 0.45), **common)}
    if flood == "lakes":
        scenes["after"] = generate_scene(out / "scene_after", lake_threshold=after_lake,
                                         progress=progress.sub(0.45, 0.9), **common)
    grid = grid_of(scenes["before"]["sar"])
    rng = np.random.default_rng([seed, 4242])
    layers = {name: {k: read_bands(scene[k], [1] if k != "optical" else [1, 2, 3]) for k in ("sar", "optical", "label")}
              for name, scene in scenes.items()}
    if flood == "area":
        layers["after"] = _flood_area(layers["before"], size, seed, flood_share, looks, resolution, rng, schema,
                                      before_lake, options)
    paths: Dict[str, Any] = {}
    for name in ("before", "after"):
        progress.check()
        sar = layers[name]["sar"]
        if date_looks > 0:
            sar = sar * rng.gamma(date_looks, 1.0 / date_looks, sar.shape).astype(np.float32)
        target = grid
        if name == "before" and warp_before:
            sar, target = _warped(sar, grid)
        if name == "after":
            with np.errstate(divide="ignore", invalid="ignore"):
                sar = (10.0 * np.log10(np.maximum(sar, 1e-6))).astype(np.float32)
        paths[f"{name}_sar"] = str(write_raster(out / f"{name}_sar.tif", sar.astype(np.float32), target,
                                                nodata=float("nan"), overwrite=overwrite,
                                                band_names=["VV (dB)" if name == "after" else "VV sigma0"]))
        optical = np.nan_to_num(layers[name]["optical"], nan=0).astype(np.uint8)
        paths[f"{name}_optical"] = str(write_raster(out / f"{name}_optical.tif", optical, grid, nodata=0,
                                                    overwrite=overwrite, band_names=["red", "green", "blue"]))
        label = np.nan_to_num(layers[name]["label"], nan=255).astype(np.uint8)
        paths[f"{name}_label"] = str(write_raster(out / f"{name}_label.tif", label, grid, nodata=255,
                                                  overwrite=overwrite, band_names=["class"]))
    for name in scenes:
        shutil.rmtree(out / f"scene_{name}", ignore_errors=True)
    w = schema.water_class
    before, after = layers["before"]["label"][0], layers["after"]["label"][0]
    truth = ((after == w) & (before != w)).astype(np.uint8)
    paths["truth"] = str(write_raster(out / "flood_truth.tif", truth, grid, nodata=255, overwrite=overwrite,
                                      band_names=["flooded"]))
    progress.report(1.0, "flood pair written")
    return {
        **paths,
        "size": size,
        "seed": seed,
        "flood": flood,
        "resolution": resolution,
        "flood_fraction": float(truth.mean()),
        "water_before": float((before == w).mean()),
        "water_after": float((after == w).mean()),
        "warp_before": warp_before,
    }


def _flood_area(before: Dict[str, np.ndarray], size: int, seed: int, share: float, looks: float,
                resolution: float, rng: np.random.Generator, schema: ClassSchema, lake: float,
                options: Dict[str, Any]) -> Dict[str, np.ndarray]:
    """The after date of ``flood="area"``: calm water painted into compact regions (module docstring)."""
    scene = SyntheticScene(size, seed, looks, resolution=resolution, lake_threshold=lake,
                           **{k: v for k, v in options.items() if k not in ("clouds", "confusers")})
    field = ndimage.gaussian_filter(rng.standard_normal((size, size)), sigma=size / 12.0, mode="reflect")
    region = field > np.quantile(field, 1.0 - share)
    label = before["label"][0]
    keep = np.isin(label, [schema.id_of("city"), schema.id_of("village"), schema.water_class]) | ~np.isfinite(label)
    flooded = region & ~keep
    spec = sm.SENSORS[scene.sensor]
    mean_db, _, slope = sm.backscatter_table(scene.sensor, scene.pols[0])
    near, far = scene.incidence
    theta = near + (far - near) * (np.arange(size) + 0.5) / size
    water_db = mean_db[sm.SURFACE["water"]] + slope[sm.SURFACE["water"]] * (theta - spec.ref_incidence)
    k, hp = scene.kernel, scene.halo

    def psf(a: np.ndarray) -> np.ndarray:
        if not hp:
            return a
        return ndimage.convolve1d(ndimage.convolve1d(a, k, axis=-1, mode="nearest"), k, axis=-2, mode="nearest")

    speckle = psf(rng.gamma(scene.speckle_shape, 1.0 / scene.speckle_shape, (size, size)))
    water = (10.0 ** (water_db / 10.0))[None, :] * speckle
    mix = np.clip(psf(flooded.astype(np.float64)), 0.0, 1.0)
    sar = (before["sar"][0] * (1.0 - mix) + water * mix).astype(np.float32)[None]
    optical = before["optical"].copy()
    rgb = np.array(sm.REFLECTANCE["water"]) * 255.0
    noise = rng.normal(0.0, sm.OPTICAL_NOISE * 255.0, (3, int(flooded.sum())))
    optical[:, flooded] = np.clip(np.rint(rgb[:, None] + noise), 1, 255)
    after_label = before["label"].copy()
    after_label[0, flooded] = schema.water_class
    return {"sar": sar, "optical": optical, "label": after_label}


def _warped(sar: np.ndarray, grid: Grid):
    """``sar`` on a grid 1.25 x coarser and shifted by a third of a pixel (bilinear)."""
    t = grid.transform
    res = t.a * 1.25
    transform = Affine(res, 0.0, t.c + t.a / 3.0, 0.0, -res, t.f - t.a / 3.0)
    width, height = int(grid.width / 1.25) - 1, int(grid.height / 1.25) - 1
    target = Grid(grid.crs_wkt, transform, width, height)
    out = np.full((1, height, width), np.nan, np.float32)
    reproject(sar, out, src_transform=t, src_crs=grid.crs, src_nodata=np.nan, dst_transform=transform,
              dst_crs=grid.crs, dst_nodata=np.nan, resampling=Resampling.bilinear)
    return out, target
