"""Geometry of a pair of views: where each view lies in its window, their overlap, ROI pooling.

Coordinates are normalised to [-1, 1] over a window (``align_corners=False``, as
:func:`torch.nn.functional.affine_grid` and ``grid_sample`` use them). A view is an affine map
``theta`` (2 x 3) from the view's normalised coordinates to the window's: ``p_window = A p_view +
c`` with ``A = scale * R`` (``R`` one of the eight flips / quarter turns) and ``c`` the view's
centre. Because every flip and quarter turn keeps boxes axis-aligned, the overlap of two views is
a box in window coordinates, and a point of that box maps into both views exactly: a region
pooled from both views covers the same ground.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812  (the usual torch alias)

# the dihedral group of the square: identity, quarter turns, flips, as 2 x 2 matrices
DIHEDRAL = np.array(
    [
        [[1, 0], [0, 1]], [[0, -1], [1, 0]], [[-1, 0], [0, -1]], [[0, 1], [-1, 0]],
        [[-1, 0], [0, 1]], [[1, 0], [0, -1]], [[0, 1], [1, 0]], [[0, -1], [-1, 0]],
    ],
    dtype=np.float64,
)


def view_box(theta: np.ndarray) -> np.ndarray:
    """The window-coordinate box ``(x0, y0, x1, y1)`` a view covers."""
    half = np.abs(theta[:, :2]).sum(1)  # |A| times (1, 1): the half extent along x and y
    return np.array([theta[0, 2] - half[0], theta[1, 2] - half[1], theta[0, 2] + half[0], theta[1, 2] + half[1]])


def overlap_box(theta_a: np.ndarray, theta_b: np.ndarray) -> Tuple[np.ndarray, float]:
    """The box both views cover, and its area as a share of the smaller view (0 when disjoint)."""
    a, b = view_box(theta_a), view_box(theta_b)
    box = np.array([max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])])
    w, h = box[2] - box[0], box[3] - box[1]
    if w <= 0 or h <= 0:
        return box, 0.0
    area = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return box, float(w * h / area)


def random_view(rng: np.random.Generator, min_scale: float) -> np.ndarray:
    """A random view of the window: scale in [min_scale, 1], any position, flip or quarter turn."""
    scale = rng.uniform(min_scale, 1.0)
    centre = rng.uniform(-(1 - scale), 1 - scale, size=2)
    theta = np.zeros((2, 3))
    theta[:, :2] = scale * DIHEDRAL[rng.integers(len(DIHEDRAL))]
    theta[:, 2] = centre
    return theta


def view_pair(
    rng: np.random.Generator, min_scale: float, min_overlap: float, tries: int = 50
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two views overlapping by at least ``min_overlap`` of the smaller one, and their overlap box.

    The second view is redrawn until the overlap is large enough; after ``tries`` draws it is
    centred on the first (always a large overlap), so the pair is never refused.
    """
    first = random_view(rng, min_scale)
    for _ in range(tries):
        second = random_view(rng, min_scale)
        box, share = overlap_box(first, second)
        if share >= min_overlap:
            return first, second, box
    second[:, 2] = first[:, 2]
    box, _ = overlap_box(first, second)
    return first, second, box


def regions_in(rng: np.random.Generator, box: np.ndarray, count: int, min_size: float) -> np.ndarray:
    """``count`` random boxes inside ``box``, each edge at least ``min_size`` of the box's edge."""
    out = np.zeros((count, 4))
    w, h = box[2] - box[0], box[3] - box[1]
    for i in range(count):
        rw, rh = w * rng.uniform(min_size, 1.0), h * rng.uniform(min_size, 1.0)
        x0, y0 = box[0] + rng.uniform(0, w - rw), box[1] + rng.uniform(0, h - rh)
        out[i] = (x0, y0, x0 + rw, y0 + rh)
    return out


def region_points(boxes: torch.Tensor, samples: int) -> torch.Tensor:
    """Bin centres of a ``samples`` x ``samples`` grid in each box.

    Args:
        boxes: (..., 4) as ``(x0, y0, x1, y1)``.

    Returns:
        (..., samples * samples, 2) points ``(x, y)``, row by row.
    """
    t = (torch.arange(samples, dtype=boxes.dtype, device=boxes.device) + 0.5) / samples
    ys, xs = torch.meshgrid(t, t, indexing="ij")
    x0, y0, x1, y1 = (boxes[..., i, None] for i in range(4))
    px = x0 + xs.reshape(-1) * (x1 - x0)
    py = y0 + ys.reshape(-1) * (y1 - y0)
    return torch.stack([px, py], dim=-1)


def to_view(points: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Window-coordinate points (N, ..., 2) in the coordinates of views ``theta`` (N, 2, 3)."""
    inverse = torch.linalg.inv(theta[:, :, :2])  # (N, 2, 2)
    shape = points.shape
    flat = points.reshape(shape[0], -1, 2) - theta[:, None, :, 2]
    return (flat @ inverse.transpose(1, 2)).reshape(shape)


def roi_align(features: torch.Tensor, points: torch.Tensor, samples: int) -> torch.Tensor:
    """ROI pooling by bilinear sampling (``grid_sample``) at the points of ``region_points``.

    Args:
        features: (N, C, h, w) feature maps covering their views.
        points: (N, R, samples * samples, 2) in the views' normalised coordinates.
        samples: the grid edge the points were made with.

    Returns:
        (N, R, C, samples, samples) region features.
    """
    n, r, p, _ = points.shape
    pooled = F.grid_sample(features, points.to(features.dtype), mode="bilinear", padding_mode="border",
                           align_corners=False)  # (N, C, R, P)
    return pooled.permute(0, 2, 1, 3).reshape(n, r, features.shape[1], samples, samples)


def roi_pool(features: torch.Tensor, points: torch.Tensor, samples: int) -> torch.Tensor:
    """Mean of :func:`roi_align` over each region: (N, R, C)."""
    return roi_align(features, points, samples).mean(dim=(-2, -1))


def sample_views(window: torch.Tensor, theta: torch.Tensor, size: int, mode: str = "bilinear") -> torch.Tensor:
    """Resample windows (N, C, H, W) into views (N, C, size, size) through ``theta`` (N, 2, 3)."""
    grid = F.affine_grid(theta.to(window.dtype), [window.shape[0], window.shape[1], size, size], align_corners=False)
    return F.grid_sample(window, grid, mode=mode, padding_mode="border", align_corners=False)
