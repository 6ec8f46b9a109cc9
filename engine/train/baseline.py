"""A per-pixel linear classifier: the classical baseline a fine-tuned network must beat.

Linear discriminant analysis on the networks' own per-pixel inputs (normalised optical and
SAR values): class means and one shared covariance, shrunk towards its diagonal so a few
hundred pixels per class suffice. Fitted on the training polygons' pixels and scored on the
held-out ones, it says whether the network earned its keep. Written here (about thirty lines
of numpy) rather than adding scikit-learn to every user's QGIS for one estimator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

MAX_PIXELS = 200_000  # fitting sample: plenty for a handful of means and one covariance


@dataclass
class LinearDiscriminant:
    """A fitted discriminant: ``predict(x)`` gives class ids for (N, F) features."""

    classes: np.ndarray  # (K,) class ids
    weights: np.ndarray  # (F, K)
    bias: np.ndarray  # (K,)

    def scores(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, np.float64) @ self.weights + self.bias

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.classes[np.argmax(self.scores(x), axis=1)]


def fit_lda(
    x: np.ndarray, y: np.ndarray, shrinkage: float = 0.1, seed: int = 0, priors: Optional[np.ndarray] = None
) -> LinearDiscriminant:
    """Fit LDA on (N, F) features and (N,) labels (equal priors unless given: polygons are not
    drawn in proportion to the classes' area).

    Raises:
        ValueError: fewer than two classes, or no sample.
    """
    x, y = np.asarray(x, np.float64), np.asarray(y)
    if len(y) > MAX_PIXELS:
        keep = np.random.default_rng(seed).choice(len(y), MAX_PIXELS, replace=False)
        x, y = x[keep], y[keep]
    classes = np.unique(y)
    if len(classes) < 2:
        raise ValueError(f"a linear classifier needs at least two classes, got {classes.tolist()}")
    means = np.stack([x[y == c].mean(0) for c in classes])
    centred = x - means[np.searchsorted(classes, y)]
    cov = centred.T @ centred / max(len(y) - len(classes), 1)
    cov = (1 - shrinkage) * cov + shrinkage * np.diag(np.diag(cov)) + 1e-9 * np.eye(x.shape[1])
    inv = np.linalg.pinv(cov)
    weights = inv @ means.T
    prior = np.full(len(classes), 1.0 / len(classes)) if priors is None else np.asarray(priors, np.float64)
    bias = -0.5 * np.einsum("kf,fk->k", means, weights) + np.log(prior)
    return LinearDiscriminant(classes, weights, bias)
