"""Stack bands from several files (e.g. Sentinel-2's 10/20/60 m bands) onto one grid.

Each band is warped window by window through :func:`~engine.raster.grid.read_on_grid`
(bilinear), so mixed resolutions and CRSs end up pixel-aligned and memory stays bounded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import rasterio

from ..progress import NULL_PROGRESS, Progress
from .grid import Grid, grid_of, read_on_grid
from .io import check_output, iter_windows, open_writer

PathLike = Union[str, Path]
BandSource = Tuple[PathLike, int]


def parse_band_source(text: str) -> BandSource:
    """``"path.tif"`` (band 1) or ``"path.tif:3"`` -> (path, band)."""
    path, sep, band = text.rpartition(":")
    if sep and band.isdigit() and path:
        return path, int(band)
    return text, 1


def default_band_names(sources: Sequence[BandSource]) -> List[str]:
    """What each stacked band is called when the caller does not say: the source band's own description
    (``VV``, ``B04``), else ``<file stem>_b1`` for a one-band file (its name says the band: ``..._B04_b1``),
    else ``<file stem>_band<k>``: ``_b<k>`` would read as Sentinel-2 band k (``_b4`` as red) whatever it holds."""
    names = []
    for path, band in sources:
        if not Path(path).exists():
            raise FileNotFoundError(f"{path}: file not found")
        with rasterio.open(path) as src:
            described, count = src.descriptions[band - 1] if 1 <= band <= src.count else None, src.count
        stem = Path(path).stem
        names.append(described or (f"{stem}_b{band}" if count == 1 else f"{stem}_band{band}"))
    return names


def finest_grid(sources: Sequence[BandSource]) -> Grid:
    """The grid of the source with the smallest pixels (the first one on ties)."""
    grids = [grid_of(p) for p, _ in sources]
    return min(grids, key=lambda g: g.res[0] * g.res[1])


def stack_bands(
    sources: Sequence[BandSource],
    out_path: PathLike,
    grid: Optional[Grid] = None,
    names: Optional[Sequence[str]] = None,
    block: int = 1024,
    resampling: str = "bilinear",
    overwrite: bool = False,
    progress: Progress = NULL_PROGRESS,
) -> Dict[str, Any]:
    """Write one float32 GeoTIFF holding ``sources`` as bands, in order, on one grid.

    Args:
        sources: (file, 1-based band) pairs; files may differ in resolution and CRS.
        out_path: the stacked GeoTIFF (NaN = nodata).
        grid: target grid; default the grid of the finest-resolution source.
        names: band descriptions; default :func:`default_band_names`.
        block: window edge in pixels.
        resampling: ``"bilinear"`` for imagery, ``"nearest"`` for classes.
        overwrite: replace an existing output.
        progress: progress and cancellation.

    Raises:
        ValueError: no sources, a missing band, no georeferencing, or a source with no valid
            pixel on the grid (named).
    """
    if not sources:
        raise ValueError("stack_bands: no band sources given")
    check_output(out_path, overwrite)
    grid = grid or finest_grid(sources)
    names = list(names) if names else default_band_names(sources)
    valid: List[int] = [0] * len(sources)
    windows = list(iter_windows(grid.width, grid.height, block))
    with open_writer(out_path, grid, len(sources), "float32", float("nan"), overwrite, names) as dst:
        for k, (window, _) in enumerate(windows):
            progress.check()
            for i, (path, band) in enumerate(sources):
                data = read_on_grid(path, [band], grid, window, resampling)
                valid[i] += int(np.isfinite(data).sum())
                dst.write(data, indexes=[i + 1], window=window)
            progress.report((k + 1) / len(windows), f"stacking window {k + 1}/{len(windows)}")
        empty = [f"{p} band {b}" for (p, b), n in zip(sources, valid) if n == 0]
        if empty:  # raising inside the writer removes the partial output
            raise ValueError(f"no valid pixels on the target grid (all nodata or outside it): {', '.join(empty)}")
    return {"output": str(out_path), "bands": names, "width": grid.width, "height": grid.height,
            "res": list(grid.res), "crs": grid.crs.to_string()}
