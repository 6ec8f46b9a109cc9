"""Confusion-matrix metrics for segmentation: OA, Cohen's Kappa, IoU, UA/PA, F1.

Rows of the matrix are the reference classes, columns the predicted classes. Pixels whose
reference is ``ignore_index`` are left out everywhere. A value that is undefined (a class
absent from both reference and prediction has no IoU) is ``None``, so the result is valid
JSON and undefined classes are skipped by the means instead of counting as 0 or 1.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Sequence

import numpy as np

from .config import IGNORE_INDEX


def _to_numpy(array: Any) -> np.ndarray:
    # torch tensors are accepted without importing torch here (inference may run without it)
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    return np.asarray(array)


def _ratio(num: float, den: float) -> Optional[float]:
    return float(num / den) if den > 0 else None


def _mean(values: Iterable[Optional[float]]) -> Optional[float]:
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else None


class ConfusionMatrix:
    """Accumulates a confusion matrix over batches or raster windows.

    Args:
        num_classes: number of classes; ids are ``0 .. num_classes - 1``.
        ignore_index: reference value excluded from every count.

    Example:
        >>> cm = ConfusionMatrix(2)
        >>> cm.update([0, 1, 1], [0, 1, 0])
        >>> round(cm.compute()["oa"], 3)
        0.667
    """

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.matrix = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def reset(self) -> None:
        self.matrix[:] = 0

    def update(self, pred: Any, target: Any) -> None:
        """Add one batch: ``pred`` and ``target`` are integer arrays/tensors of one shape.

        Raises:
            ValueError: shapes differ, or a value is not a class id (nor ignore in ``target``).
        """
        p = _to_numpy(pred).reshape(-1).astype(np.int64, copy=False)
        t = _to_numpy(target).reshape(-1).astype(np.int64, copy=False)
        if p.shape != t.shape:
            raise ValueError(f"prediction has {p.size} pixels but the reference has {t.size}")
        valid = t != self.ignore_index
        p, t = p[valid], t[valid]
        k = self.num_classes
        if t.size and (t.min() < 0 or t.max() >= k):
            bad = np.unique(t[(t < 0) | (t >= k)])[:5].tolist()
            raise ValueError(
                f"reference holds value(s) {bad} that are neither a class id 0..{k - 1} "
                f"nor the ignore value {self.ignore_index}"
            )
        if p.size and (p.min() < 0 or p.max() >= k):
            bad = np.unique(p[(p < 0) | (p >= k)])[:5].tolist()
            raise ValueError(
                f"prediction holds value(s) {bad} on labelled pixels; expected class ids 0..{k - 1}"
            )
        self.matrix += np.bincount(t * k + p, minlength=k * k).reshape(k, k)

    def merge(self, other: ConfusionMatrix) -> None:
        """Add the counts of another matrix of the same size (e.g. from another window)."""
        if other.num_classes != self.num_classes:
            raise ValueError(f"cannot merge {other.num_classes} classes into {self.num_classes}")
        self.matrix += other.matrix

    def compute(self) -> Dict[str, Any]:
        """Metrics of everything accumulated so far.

        Returns:
            dict with ``oa``, ``kappa``, ``iou`` (per class), ``miou``, ``precision``
            (user's accuracy), ``recall`` (producer's accuracy), ``f1`` (per class),
            ``mf1``, ``support`` (reference pixels per class), ``pixels`` and ``matrix``.
        """
        m = self.matrix.astype(np.float64)
        total = m.sum()
        tp = np.diag(m)
        ref = m.sum(axis=1)  # reference pixels per class
        pred = m.sum(axis=0)  # predicted pixels per class
        oa = _ratio(tp.sum(), total)
        # Cohen's Kappa: agreement beyond the chance agreement of the two marginals
        pe = float((ref * pred).sum() / total**2) if total > 0 else 0.0
        if oa is None:
            kappa = None
        elif pe < 1.0:
            kappa = (oa - pe) / (1.0 - pe)
        else:  # a single class in both maps: perfect agreement, nothing left to chance
            kappa = 1.0 if oa == 1.0 else 0.0
        k = self.num_classes
        iou = [_ratio(tp[c], ref[c] + pred[c] - tp[c]) for c in range(k)]
        precision = [_ratio(tp[c], pred[c]) for c in range(k)]
        recall = [_ratio(tp[c], ref[c]) for c in range(k)]
        f1 = [_ratio(2 * tp[c], ref[c] + pred[c]) for c in range(k)]
        return {
            "oa": oa,
            "kappa": kappa,
            "iou": iou,
            "miou": _mean(iou),
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "mf1": _mean(f1),
            "support": [int(v) for v in ref],
            "pixels": int(total),
            "matrix": self.matrix.tolist(),
        }


def mean_iou(metrics: Dict[str, Any], exclude: Sequence[int] = ()) -> Optional[float]:
    """Mean of the defined per-class IoUs, leaving out the classes in ``exclude``.

    ``mean_iou(m, exclude=[water])`` is the "other classes" mIoU of the experiments.
    """
    return _mean(v for c, v in enumerate(metrics["iou"]) if c not in set(exclude))


def binary_water_metrics(
    pred_water: Any, target: Any, water_class: int, ignore_index: int = IGNORE_INDEX
) -> ConfusionMatrix:
    """A 2-class (non-water, water) matrix from a boolean water map and a multi-class label."""
    t = _to_numpy(target).astype(np.int64)
    binary = np.where(t == ignore_index, ignore_index, (t == water_class).astype(np.int64))
    cm = ConfusionMatrix(2, ignore_index)
    cm.update(_to_numpy(pred_water).astype(np.int64), binary)
    return cm


def format_metrics(metrics: Dict[str, Any], names: Optional[List[str]] = None) -> str:
    """A short human-readable summary line: OA, Kappa, mIoU and per-class IoU."""

    def pct(v: Optional[float]) -> str:
        return "n/a" if v is None else f"{100 * v:.2f}"

    names = names or [str(i) for i in range(len(metrics["iou"]))]
    per_class = ", ".join(f"{n} {pct(v)}" for n, v in zip(names, metrics["iou"]))
    return (
        f"OA {pct(metrics['oa'])}  Kappa {pct(metrics['kappa'])}  mIoU {pct(metrics['miou'])}"
        f"  IoU: {per_class}"
    )
