"""Streamed pairs of augmented SAR views with a known overlap, from one or more SAR rasters.

Each step reads a few windows (``PretrainConfig.block_size``) at random places of the rasters
(chosen in proportion to their area) through the model-input contract's reader, so the views
hold the same features a network is fed in training and segmentation (units resolved per file,
Lee filter, dB, the model's fixed range). Only those windows are in memory: a scene of any size
costs the same. Windows with too much nodata are redrawn; what nodata remains is masked.
The draws of step ``i`` depend only on ``(seed, i)``, so a resumed run sees the same batches.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from scipy import ndimage

from ..config import PretrainConfig
from ..inputs.contract import InputOverrides, InputRecipe, ResolvedInputs, resolve_inputs
from ..inputs.reader import PairReader
from ..progress import NULL_PROGRESS, Progress
from ..raster.grid import grid_of
from .geometry import regions_in, sample_views, view_pair

PathLike = Union[str, Path]
CONTOUR_STRIDE = 4  # contour targets are made at the resolution of the shallow (stride-4) features
WINDOW_TRIES = 8  # redraws of a window with too much nodata before the best one is taken


@dataclass
class SarSource:
    """One SAR raster, its resolved inputs and its window reader."""

    path: Path
    resolved: ResolvedInputs
    reader: PairReader
    width: int
    height: int


def contour_map(sar: np.ndarray, valid: np.ndarray, fraction: float) -> np.ndarray:
    """Land-cover contours of a filtered SAR window: the strongest ``fraction`` of its gradients.

    Args:
        sar: (C, h, w) preprocessed SAR (Lee-filtered, normalised dB), NaN-free.
        valid: (h, w) pixels that hold data; gradients touching nodata are not contours.
        fraction: share of valid pixels marked as contour.

    Returns:
        (h, w) float32 of 0 / 1.
    """
    mean = sar.mean(0).astype(np.float64)
    magnitude = np.hypot(ndimage.sobel(mean, 0), ndimage.sobel(mean, 1))
    inner = ndimage.binary_erosion(valid, iterations=1, border_value=1)
    if not inner.any():
        return np.zeros_like(mean, np.float32)
    threshold = np.quantile(magnitude[inner], 1.0 - fraction)
    return ((magnitude >= threshold) & inner & (magnitude > 0)).astype(np.float32)


def open_sources(
    paths: Sequence[PathLike], recipe: InputRecipe, overrides: Optional[InputOverrides], min_size: int,
    progress: Progress = NULL_PROGRESS,
) -> List[SarSource]:
    """Resolve each raster by the input contract and open a window reader on its own grid.

    Raises:
        ValueError: no raster given, or one smaller than ``min_size`` pixels on a side.
    """
    if not paths:
        raise ValueError("pretraining needs at least one SAR raster")
    sources = []
    for i, path in enumerate(paths):
        path = Path(path)
        resolved = resolve_inputs(recipe, None, path, overrides, progress.sub(i / len(paths), (i + 1) / len(paths)))
        resolved.report(progress)
        grid = grid_of(path)
        if min(grid.width, grid.height) < min_size:
            raise ValueError(
                f"SAR raster {path} is {grid.width} x {grid.height} pixels; pretraining needs at least "
                f"{min_size} x {min_size} (the view size); lower the view size or give a larger raster"
            )
        reader = PairReader(None, path, grid, (), resolved.bands.sar_bands, [resolved.preprocessor])
        sources.append(SarSource(path, resolved, reader, grid.width, grid.height))
    return sources


class ViewPairSampler:
    """Batches of two augmented views per window position, their geometry and contour targets.

    Args:
        sources: from :func:`open_sources`.
        cfg: sizes, overlap, augmentation strengths.
    """

    def __init__(self, sources: Sequence[SarSource], cfg: PretrainConfig) -> None:
        if cfg.view_size % 32:
            raise ValueError(f"the view size must be a multiple of 32 (the encoders' stride), got {cfg.view_size}")
        self.sources, self.cfg = list(sources), cfg
        areas = np.array([s.width * s.height for s in self.sources], np.float64)
        self.weights = areas / areas.sum()

    def _window(self, rng: np.random.Generator) -> np.ndarray:
        """A (C, b, b) window with NaN where nodata, the best of a few draws."""
        source = self.sources[rng.choice(len(self.sources), p=self.weights)]
        block = min(self.cfg.block_size, source.width, source.height)
        best, best_share = None, -1.0
        for _ in range(WINDOW_TRIES):
            col = int(rng.integers(0, source.width - block + 1))
            row = int(rng.integers(0, source.height - block + 1))
            sar = source.reader.read(col, row, block, block).sar[0]
            share = float(np.isfinite(sar).all(0).mean())
            if share > best_share:
                best, best_share = sar, share
            if share >= self.cfg.min_valid:
                break
        return best

    def batch(self, step: int) -> Dict[str, torch.Tensor]:
        """The batch of step ``step``.

        Returns:
            ``query``, ``key`` (N, C, V, V) augmented views; ``theta_query``, ``theta_key``
            (N, 2, 3) view-to-window maps; ``overlap`` (N, 4); ``regions`` (N, R, 4) boxes in the
            overlap; ``contour`` and ``valid`` (N, 1, V/4, V/4) in the query view.
        """
        cfg = self.cfg
        rng = np.random.default_rng([cfg.seed, step])
        per_block = -(-cfg.batch_size // cfg.blocks_per_step)
        regions = int(rng.integers(1, cfg.di_regions + 1))  # dynamic: how many instances this step
        windows, thetas, boxes, region_boxes = [], [], [], []
        while len(thetas) < cfg.batch_size:
            sar = self._window(rng)
            valid = np.isfinite(sar).all(0)
            fill = float(np.nanmedian(sar)) if valid.any() else 0.0
            sar = np.where(np.isfinite(sar), sar, fill).astype(np.float32)
            contour = contour_map(sar, valid, cfg.contour_fraction)
            stacked = torch.from_numpy(np.concatenate([sar, contour[None], valid[None].astype(np.float32)]))
            if windows and stacked.shape != windows[0].shape:  # a raster smaller than the block
                stacked = torch.nn.functional.interpolate(stacked[None], size=windows[0].shape[-2:], mode="nearest")[0]
            for _ in range(min(per_block, cfg.batch_size - len(thetas))):
                first, second, box = view_pair(rng, cfg.min_scale, cfg.min_overlap)
                windows.append(stacked)
                thetas.append(np.stack([first, second]))
                boxes.append(box)
                region_boxes.append(regions_in(rng, box, regions, cfg.di_min_size))
        window = torch.stack(windows)
        theta = torch.from_numpy(np.stack(thetas)).float()
        c = window.shape[1] - 2
        view = cfg.view_size
        small = view // CONTOUR_STRIDE
        query = sample_views(window[:, :c], theta[:, 0], view)
        key = sample_views(window[:, :c], theta[:, 1], view)
        maps = sample_views(window[:, c:], theta[:, 0], small)
        generator = torch.Generator().manual_seed(int(rng.integers(2**31)))
        return {
            "query": self.augment(query, generator),
            "key": self.augment(key, generator),
            "theta_query": theta[:, 0],
            "theta_key": theta[:, 1],
            "overlap": torch.from_numpy(np.stack(boxes)).float(),
            "regions": torch.from_numpy(np.stack(region_boxes)).float(),
            "contour": (maps[:, :1] > 0.5).float(),
            "valid": (maps[:, 1:] > 0.99).float(),
        }

    def augment(self, views: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Contrast, brightness, residual speckle (additive in dB) and an occasional blur, per view."""
        cfg = self.cfg
        n = views.shape[0]

        def uniform(low: float, high: float) -> torch.Tensor:
            return low + (high - low) * torch.rand(n, 1, 1, 1, generator=generator)

        contrast = uniform(1 - cfg.contrast, 1 + cfg.contrast)
        brightness = uniform(-cfg.brightness, cfg.brightness)
        out = (views - 0.5) * contrast + 0.5 + brightness
        out = out + cfg.noise_std * torch.randn(views.shape, generator=generator)
        blur = torch.rand(n, generator=generator) < 0.3
        if blur.any():
            kernel = torch.full((out.shape[1], 1, 3, 3), 1 / 9.0)
            smooth = torch.nn.functional.conv2d(
                torch.nn.functional.pad(out, (1, 1, 1, 1), mode="replicate"), kernel, groups=out.shape[1])
            out = torch.where(blur[:, None, None, None], smooth, out)
        return out


def recipe_for(bands: Sequence[int] = (), like: Optional[InputRecipe] = None) -> InputRecipe:
    """The input recipe of a new encoder: a model's (``like``) or the default chain, with SAR bands."""
    recipe = like or InputRecipe()
    if bands:
        recipe = dataclasses.replace(recipe, bands=dataclasses.replace(
            recipe.bands, sar_bands=tuple(bands), sar_names=tuple(f"sar_b{b}" for b in bands)))
    return recipe
