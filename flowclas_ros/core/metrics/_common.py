# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Input checks and score binning shared by the metric accumulators and the references."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

# 8-connectivity: diagonal neighbours belong to the same anomaly region (MVTec convention).
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def as_numpy(x: Any) -> np.ndarray:
    """Return ``x`` as a numpy array; torch tensors are detached and moved to the CPU first.

    Duck-typed on ``detach`` so this module never imports torch.
    """
    if hasattr(x, 'detach'):
        x = x.detach().cpu()
        try:
            return np.asarray(x)
        except TypeError:  # dtypes numpy lacks (bfloat16): widen to float32 first
            return np.asarray(x.float())
    return np.asarray(x)


def check_pair(scores: Any, labels: Any, ignore_label: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate a score/label pair and return ``(scores, labels)`` as arrays of the same shape.

    Raises:
        ValueError: shapes differ, a label is not 0, 1 or ``ignore_label``, or a non-void
            score is NaN (a NaN would silently land in an arbitrary bin otherwise).
    """
    s = as_numpy(scores)
    y = as_numpy(labels)
    if s.shape != y.shape:
        raise ValueError(f'scores shape {s.shape} does not match labels shape {y.shape}')
    if s.dtype.kind not in 'fiub':
        raise ValueError(f'scores must be numeric, got dtype {s.dtype}')
    s = s.astype(np.float64, copy=False)
    void = y == ignore_label
    bad = ~(void | (y == 0) | (y == 1))
    if bad.any():
        found = np.unique(y[bad])[:5].tolist()
        raise ValueError(f'labels must be 0, 1 or {ignore_label} (void); found {found}')
    if np.isnan(s[~void]).any():
        raise ValueError('scores contain NaN at non-void pixels')
    return s, y


def bin_index(scores: np.ndarray, lo: float, hi: float, bins: int) -> np.ndarray:
    """Map scores to bin indices ``0 .. bins-1``; values outside ``[lo, hi]`` go to edge bins."""
    pos = (scores - lo) * (bins / (hi - lo))
    np.clip(pos, 0.0, bins - 1, out=pos)  # also tames +-inf before the integer cast
    return pos.astype(np.int64)  # truncation == floor for non-negative values


def check_binning(lo: float, hi: float, bins: int) -> tuple[float, float, int]:
    """Validate histogram bounds early, so a bad config fails at construction, not at compute."""
    lo, hi = float(lo), float(hi)
    if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
        raise ValueError(f'need finite lo < hi, got lo={lo}, hi={hi}')
    if int(bins) != bins or bins < 1:
        raise ValueError(f'bins must be a positive integer, got {bins}')
    return lo, hi, int(bins)


def label_regions(label_map: np.ndarray) -> tuple[np.ndarray, int]:
    """Label the 8-connected components of ``label_map == 1``; return ``(labelled, count)``."""
    labelled, count = ndimage.label(label_map == 1, structure=_EIGHT_CONNECTED)
    return labelled, int(count)


def area_up_to(x: np.ndarray, y: np.ndarray, x_max: float) -> float:
    """Trapezoidal area under the polyline ``(x, y)`` from ``x[0]`` to ``x_max``.

    ``x`` must be non-decreasing. If ``x_max`` falls strictly between two points, ``y`` is
    interpolated linearly there, so the result is continuous in ``x_max``.
    """
    n = int(np.searchsorted(x, x_max, side='right'))  # points with x <= x_max form a prefix
    xs, ys = x[:n], y[:n]
    area = float(np.sum(np.diff(xs) * (ys[1:] + ys[:-1]) * 0.5))
    if 0 < n < len(x) and xs[-1] < x_max:
        x0, y0, x1, y1 = xs[-1], ys[-1], x[n], y[n]
        y_end = y0 + (y1 - y0) * (x_max - x0) / (x1 - x0)
        area += float((x_max - x0) * (y0 + y_end) * 0.5)
    return area
