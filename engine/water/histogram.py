"""Fixed-bin dB histograms and the statistics that split them into a dark and a bright class.

Every histogram uses the same bins, so histograms of windows add up exactly to the histogram
of the whole raster and a streamed threshold equals the whole-array one bit for bit.
A threshold is returned as a bin edge index ``k``: the dark class is bins ``[0, k)``, i.e.
values below ``bins.edges[k]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np


@dataclass(frozen=True)
class Bins:
    """Histogram bins in dB: ``[lo, hi)`` in steps of ``width``; values outside go to the end bins."""

    lo: float = -60.0
    hi: float = 30.0
    width: float = 0.05

    @property
    def n(self) -> int:
        return int(round((self.hi - self.lo) / self.width))

    @property
    def edges(self) -> np.ndarray:
        return self.lo + self.width * np.arange(self.n + 1, dtype=np.float64)

    @property
    def centers(self) -> np.ndarray:
        return self.lo + self.width * (np.arange(self.n, dtype=np.float64) + 0.5)

    def index(self, values: np.ndarray) -> np.ndarray:
        """Bin index of each finite value (int64), clipped to the end bins."""
        idx = np.floor((np.asarray(values, dtype=np.float64) - self.lo) / self.width)
        return np.clip(idx, 0, self.n - 1).astype(np.int64)

    def count(self, values: np.ndarray) -> np.ndarray:
        """Histogram (int64, length ``n``) of the finite values; NaN is skipped."""
        v = np.asarray(values)
        v = v[np.isfinite(v)]
        return np.bincount(self.index(v), minlength=self.n).astype(np.int64)


@dataclass(frozen=True)
class Mixture:
    """Two Gaussians fitted to a histogram: index 0 is the dark (water) mode, 1 the bright one."""

    weights: Tuple[float, float]
    means: Tuple[float, float]
    stds: Tuple[float, float]

    @property
    def ashman_d(self) -> float:
        """Ashman's D: mode separation in pooled standard deviations; > 2 means clearly bimodal."""
        s = math.sqrt(self.stds[0] ** 2 + self.stds[1] ** 2)
        return math.sqrt(2.0) * abs(self.means[1] - self.means[0]) / s if s > 0 else 0.0

    def to_dict(self) -> dict:
        return {
            "weights": [round(float(w), 4) for w in self.weights],
            "means": [round(float(m), 3) for m in self.means],
            "stds": [round(float(s), 3) for s in self.stds],
            "ashman_d": round(self.ashman_d, 3),
        }


def _cumulants(hist: np.ndarray, bins: Bins):
    """Class weight, mean and variance of the dark class for every split k = 1..n-1, and of the rest."""
    p = hist.astype(np.float64) / max(float(hist.sum()), 1.0)
    c = bins.centers
    c = c - float(np.dot(p, c))  # centred, so the variance differences do not cancel badly
    w0 = np.cumsum(p)[:-1]
    s1 = np.cumsum(p * c)[:-1]
    s2 = np.cumsum(p * c * c)[:-1]
    w1 = 1.0 - w0
    t1, t2 = float(np.dot(p, c)), float(np.dot(p, c * c))
    with np.errstate(invalid="ignore", divide="ignore"):
        m0, m1 = s1 / w0, (t1 - s1) / w1
        v0, v1 = s2 / w0 - m0 * m0, (t2 - s2) / w1 - m1 * m1
    return w0, w1, m0, m1, v0, v1


def _plateau_middle(score: np.ndarray, best: int) -> int:
    """Middle of the run of splits scoring exactly like ``best``.

    Splits inside a run of empty bins leave both classes unchanged, so they score the same;
    taking the first one would put the threshold at the edge of the gap between the modes.
    """
    lo = hi = best
    while lo > 0 and score[lo - 1] == score[best]:
        lo -= 1
    while hi < len(score) - 1 and score[hi + 1] == score[best]:
        hi += 1
    return (lo + hi) // 2


def otsu_index(hist: np.ndarray, bins: Bins) -> Optional[int]:
    """Otsu's threshold (maximum between-class variance) as a bin edge index, or None if < 2 bins used."""
    if np.count_nonzero(hist) < 2:
        return None
    w0, w1, m0, m1, _, _ = _cumulants(hist, bins)
    with np.errstate(invalid="ignore"):
        between = w0 * w1 * (m1 - m0) ** 2
    between = np.where(np.isfinite(between), between, -1.0)
    return _plateau_middle(between, int(np.argmax(between))) + 1


def kittler_illingworth_index(
    hist: np.ndarray, bins: Bins, min_fraction: float = 0.01, search: Optional[Tuple[int, int]] = None
) -> Optional[int]:
    """Kittler-Illingworth minimum-error threshold as a bin edge index.

    Only splits leaving at least ``min_fraction`` of the pixels on each side are considered
    (the criterion otherwise runs to the histogram ends), optionally inside ``search`` =
    (first, last) edge indices.
    """
    if np.count_nonzero(hist) < 2:
        return None
    w0, w1, _, _, v0, v1 = _cumulants(hist, bins)
    floor = bins.width**2 / 12.0  # variance of one bin: a class cannot be narrower
    ok = (w0 >= min_fraction) & (w1 >= min_fraction) & (v0 > floor) & (v1 > floor)
    if search is not None:
        k = np.arange(1, bins.n)
        ok &= (k >= search[0]) & (k <= search[1])
    if not ok.any():
        return None
    with np.errstate(invalid="ignore", divide="ignore"):
        j = w0 * np.log(v0) + w1 * np.log(v1) - 2.0 * (w0 * np.log(w0) + w1 * np.log(w1))
    j = np.where(ok, j, np.inf)
    return _plateau_middle(j, int(np.argmin(j))) + 1


def fit_two_gaussians(
    hist: np.ndarray, bins: Bins, split: int, iterations: int = 100, tol: float = 1e-6
) -> Optional[Mixture]:
    """EM fit of two Gaussians to a histogram, started from the classes on either side of ``split``.

    Fitting the mixture (rather than taking the truncated classes' moments) keeps the spreads
    honest where the modes overlap. Returns None if a side of ``split`` is empty.
    """
    keep = hist > 0
    h, c = hist[keep].astype(np.float64), bins.centers[keep]
    n = h.sum()
    low = c < bins.edges[split]
    if n == 0 or not low.any() or low.all():
        return None
    floor = bins.width**2 / 12.0
    params = []
    for side in (low, ~low):
        hs, cs = h[side], c[side]
        m = float(np.dot(hs, cs) / hs.sum())
        params.append([hs.sum() / n, m, float(np.dot(hs, (cs - m) ** 2) / hs.sum()) + floor])
    last = -np.inf
    for _ in range(iterations):
        logs = [math.log(w) - 0.5 * math.log(v) - 0.5 * (c - m) ** 2 / v for w, m, v in params]
        total = np.logaddexp(logs[0], logs[1])
        r0 = np.exp(logs[0] - total)
        for j, r in enumerate((r0, 1.0 - r0)):
            nj = float(np.dot(h, r))
            if nj <= 1e-9 * n:  # a component vanished: the histogram is one mode
                return None
            m = float(np.dot(h * r, c) / nj)
            params[j] = [nj / n, m, float(np.dot(h * r, (c - m) ** 2) / nj) + floor]
        ll = float(np.dot(h, total))
        if abs(ll - last) <= tol * abs(ll):
            break
        last = ll
    params.sort(key=lambda p: p[1])
    return Mixture(
        weights=(params[0][0], params[1][0]),
        means=(params[0][1], params[1][1]),
        stds=(math.sqrt(params[0][2]), math.sqrt(params[1][2])),
    )
