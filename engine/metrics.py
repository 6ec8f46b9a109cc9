"""Confusion-matrix metrics for segmentation: OA, Cohen's Kappa, IoU, UA/PA, F1.

Rows of the matrix are the reference classes, columns the predicted classes. Pixels whose
reference is ``ignore_index`` are left out everywhere. A value that is undefined (a class
absent from both reference and prediction has no IoU) is ``None``, so the result is valid
JSON and undefined classes are skipped by the means instead of counting as 0 or 1.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

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


def on_measured_classes(metrics: Dict[str, Any]) -> Dict[str, Any]:
    """``metrics`` (:meth:`ConfusionMatrix.compute`) with the classes the reference does not hold unmeasured.

    A sparse reference (held-out polygons) cannot measure a class it holds no pixel of: that
    class's IoU would be 0.0 from false alarms alone, which are already errors of the classes
    drawn there. Its IoU, UA, PA and F1 become None, ``miou``/``mf1`` average the measured
    classes only (so two models scored on one reference average the same classes), and
    ``unmeasured`` lists the class ids left out.
    """
    support = metrics["support"]
    out = dict(metrics)
    for key in ("iou", "precision", "recall", "f1"):
        out[key] = [v if support[c] > 0 else None for c, v in enumerate(metrics[key])]
    out.update(miou=_mean(out["iou"]), mf1=_mean(out["f1"]), unmeasured=[c for c, n in enumerate(support) if n == 0])
    return out


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


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Square (Chebyshev) dilation by ``radius`` pixels; pixels outside the array count as False."""
    if radius <= 0:
        return mask.copy()
    from scipy.ndimage import binary_dilation

    return binary_dilation(mask, structure=np.ones((2 * radius + 1, 2 * radius + 1), bool))


def class_boundary(labels: np.ndarray, cls: int, valid: Optional[np.ndarray] = None) -> np.ndarray:
    """Pixels of class ``cls`` with an 8-neighbour of another class (both inside ``valid``).

    A class region touching unlabelled pixels (``valid`` False) has no boundary there: a
    polygon's outline is not a class boundary.
    """
    valid = np.ones(labels.shape, bool) if valid is None else valid
    inside = (labels == cls) & valid
    other = (labels != cls) & valid
    return inside & _dilate(other, 1)


class BoundaryFScore:
    """Boundary F-score per class with a distance tolerance, accumulated over windows.

    For class k the reference boundary ``B_ref`` and the predicted boundary ``B_pred`` are the
    pixels of class k next to another class (:func:`class_boundary`; the reference's unlabelled
    pixels are not a class). Precision is the share of ``B_pred`` pixels within ``tolerance``
    pixels (Chebyshev distance) of ``B_ref``, recall the share of ``B_ref`` within ``tolerance``
    of ``B_pred``, F = 2PR / (P + R). Predicted boundary pixels are only judged where the
    reference is labelled over their whole tolerance neighbourhood, so a sparse polygon
    reference does not count every predicted edge beside a polygon as false. For thin
    classes (roads) the boundary is nearly the whole class, so the score measures whether the
    structure was found at the right place; for water it is the shoreline.

    Args:
        num_classes: class ids ``0 .. num_classes - 1``.
        tolerance: pixels of slack (0: exact position).
        ignore_index: reference value of unlabelled pixels.
    """

    def __init__(self, num_classes: int, tolerance: int = 2, ignore_index: int = IGNORE_INDEX) -> None:
        if tolerance < 0:
            raise ValueError(f"boundary tolerance must be 0 or more pixels, got {tolerance}")
        self.num_classes, self.tolerance, self.ignore_index = int(num_classes), int(tolerance), int(ignore_index)
        # per class: matched predicted, predicted, matched reference, reference boundary pixels
        self.counts = np.zeros((self.num_classes, 4), dtype=np.int64)

    @property
    def halo(self) -> int:
        """Context a window needs on every side for its core's counts to be exact."""
        return self.tolerance + 1

    def update(
        self,
        pred: Any,
        target: Any,
        core: Optional[Tuple[slice, slice]] = None,
        present: Optional[np.ndarray] = None,
    ) -> None:
        """Add one 2-D window.

        Args:
            pred, target: class maps of one shape.
            core: only pixels inside ``core`` are counted; the rest is context (e.g. a halo of
                :attr:`halo` pixels read around a raster window).
            present: False where the window holds no pixel at all (beyond the raster's edge, no
                prediction): treated like the space beyond an array's border, neither a class
                nor unlabelled, so a windowed score equals the whole-array score.
        """
        p = _to_numpy(pred).astype(np.int64, copy=False)
        t = _to_numpy(target).astype(np.int64, copy=False)
        if p.shape != t.shape or p.ndim != 2:
            raise ValueError(f"boundary F-score needs two 2-D maps of one shape, got {p.shape} and {t.shape}")
        present = np.ones(p.shape, bool) if present is None else np.asarray(present, bool)
        valid = (t != self.ignore_index) & present
        judged = ~_dilate(~valid & present, self.tolerance + 1)  # whole neighbourhood labelled
        count = np.zeros(p.shape, bool)
        count[core if core is not None else (slice(None), slice(None))] = True
        for c in range(self.num_classes):
            ref = class_boundary(t, c, valid)
            edge = class_boundary(p, c, present)
            prd = edge & judged
            if not ref.any() and not prd.any():
                continue
            self.counts[c] += [
                int((prd & _dilate(ref, self.tolerance) & count).sum()),
                int((prd & count).sum()),
                int((ref & _dilate(edge, self.tolerance) & count).sum()),
                int((ref & count).sum()),
            ]

    def update_batch(self, pred: Any, target: Any) -> None:
        """Add a (B, H, W) batch, image by image."""
        p, t = _to_numpy(pred), _to_numpy(target)
        for i in range(p.shape[0]):
            self.update(p[i], t[i])

    def compute(self) -> Dict[str, Any]:
        """``boundary_f``, ``boundary_precision``, ``boundary_recall`` per class (None where a class
        has no boundary in either map) and ``boundary_tolerance``."""
        f, prec, rec = [], [], []
        for mp, np_, mr, nr in self.counts.tolist():
            p, r = _ratio(mp, np_), _ratio(mr, nr)
            prec.append(p)
            rec.append(r)
            if np_ == 0 and nr == 0:
                f.append(None)
            else:
                p, r = p or 0.0, r or 0.0
                f.append(2 * p * r / (p + r) if p + r > 0 else 0.0)
        return {"boundary_f": f, "boundary_precision": prec, "boundary_recall": rec,
                "boundary_tolerance": self.tolerance}


def thin_structure_classes(names: Sequence[str], water_class: int) -> Dict[str, int]:
    """The classes whose boundary F-score the reports name: ``road`` (if the schema has a class
    of that name) and the water class (its boundary is the shoreline)."""
    out: Dict[str, int] = {}
    lowered = [n.lower() for n in names]
    if "road" in lowered:
        out["road"] = lowered.index("road")
    out["shoreline"] = int(water_class)
    return out
