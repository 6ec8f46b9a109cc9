"""The thermal-noise floor of a cross-polarised SAR band, estimated per file.

Sentinel-1's noise-equivalent sigma nought is about -22 to -28 dB across an IW swath. Cross-polarised
backscatter of calm water lies under it, so a product made without thermal-noise removal (or with its
residue left) shows the water at the floor: VH -19 to -22 dB on held-out Sen1Floods11, STAC Overflow,
C2S-MS and TerraMesh chips whose darkest 1 % of VH sits at -23 to -27 dB, where noise-removed chips
reach -37 to -47 dB. The VV + VH water expert learnt noise-removed VH (water near -28 dB) and misses
such water. So that model (``SarPreprocessConfig.noise_floor_band``) reads the band with the floor
estimated here taken off, as noise removal would (:func:`engine.preprocess.sar._without_noise_floor`).

The estimate is the band's darkest 1 % in sigma-nought dB, at most Sentinel-1's specified noise level (-22 dB):
a darker end brighter than that is land. On a noise-removed band it is far under
any water or land and taking it off changes nothing that matters; on a band with a floor it removes
part of the noise. Measured on 22 real chips: 16 held-out with water, two training halves, four dry
(docs/experiments/zero_shot_real.md, "The VH noise floor in the product"). Only calibrated levels get
it: relative levels and digital numbers have no floor in dB to speak of. Dark land cannot be told from
a floor this way: a dry chip whose darkest VH is land at -26 dB went from 2.6 to 5.8 % called water.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence, Tuple, Union

import numpy as np

from ..config import SarPreprocessConfig
from ..preprocess.normalize import sample_features
from ..progress import NULL_PROGRESS, Progress

PathLike = Union[str, Path]

NOISE_FLOOR_PERCENTILE = 1.0
"""The floor estimate: this percentile of the sampled band, in sigma-nought dB."""
NOISE_FLOOR_MAX_DB = -22.0
"""The highest floor taken off: Sentinel-1's specified noise-equivalent sigma nought (at most -22 dB). A darker end
brighter than that is land (a dry Sen1Floods11 Ghana chip's is -19.3 dB), not noise, so no more comes off it."""
FLOOR_REPORTED_ABOVE_DB = -30.0
"""A floor over this is named in the run's log (a band without a floor reaches far lower: -37 to -47 dB)."""


def estimate_noise_floors(
    path: PathLike, bands: Sequence[int], cfg: SarPreprocessConfig, progress: Progress = NULL_PROGRESS, seed: int = 0,
) -> Tuple[Tuple[float, ...], str]:
    """Per band, the noise floor (dB) to take off, 0.0 elsewhere; and a line for the log ("" when none is named).

    Args:
        path: the SAR raster.
        bands: the 1-based bands the model reads, in its order.
        cfg: the file's resolved chain (units, backscatter, fills); its ``noise_floor_band`` says which band.
        progress: progress and cancellation (sampling reads a few windows).
        seed: seeds the sample.
    """
    position = cfg.noise_floor_band
    if not 1 <= position <= len(bands):
        return (), ""
    plain = dataclasses.replace(cfg, lee_filter=False, incidence_normalize=False, to_db=True, noise_floors_db=())
    table, _ = sample_features(path, bands, plain, progress=progress, seed=seed)
    values = table[position - 1]
    values = values[np.isfinite(values)]
    if values.size == 0:
        return (), ""
    darkest = round(float(np.percentile(values, NOISE_FLOOR_PERCENTILE)), 2)
    floor = min(darkest, NOISE_FLOOR_MAX_DB)
    floors = tuple(floor if i == position - 1 else 0.0 for i in range(len(bands)))
    line = ""
    if floor > FLOOR_REPORTED_ABOVE_DB:
        at = f"{floor:.1f} dB (its darkest 1 %)" if floor == darkest else (
            f"{floor:.1f} dB, Sentinel-1's highest (its darkest 1 %, {darkest:.1f} dB, is land)")
        line = (f"SAR {Path(path).name} band {bands[position - 1]} (cross-polarised): a noise floor at {at}, taken "
                "off before the VV + VH water expert reads it, as thermal-noise removal does")
    return floors, line
