"""What the networks see where the SAR has no data.

Normalised SAR runs from 0 (darkest) to 1, so filling nodata with 0 shows the network a large,
perfectly dark area: open water. Its context then changes the decisions on the valid pixels
beside it; on real scenes with 40 % nodata, 20-27 % of the teacher's water decisions on the
remaining pixels flipped (docs/experiments/zero_shot_real.md, "Nodata"). Filling each missing
pixel with its nearest valid pixel keeps that context neutral (0.2-1.3 % flips).

Missing optical stays 0: the student is trained to read blanked optical as "no optical"
(:mod:`engine.data.augment`, optical dropout).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def fill_sar_nodata(sar: np.ndarray) -> np.ndarray:
    """Copy of a (C, H, W) SAR array with every non-finite pixel set to its nearest pixel that is
    finite in all bands (0 when none is). Output is float32 and NaN-free."""
    out = np.array(sar, dtype=np.float32, copy=True)
    missing = ~np.isfinite(out).all(axis=0)
    if not missing.any():
        return out
    if missing.all():
        out[...] = 0.0
        return out
    rows, cols = ndimage.distance_transform_edt(missing, return_distances=False, return_indices=True)
    out[:, missing] = out[:, rows[missing], cols[missing]]
    return out
