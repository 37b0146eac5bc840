# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Thresholds for a target false-positive rate, set on normal validation images.

Two rates matter on a robot: the fraction of normal pixels marked (how speckled a mask is) and
the fraction of normal frames with anything marked (how often it raises an alarm). A table of
raw-score quantiles at fixed rates is stored with the model, so any target can be looked up
at run time without the validation data.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from flowclas_ros.core.config import FprTable

# Target rates a table answers, (low, high]: it is stored from ``high`` down to 1e-6.
TARGET_FPR_RANGE = (0.0, 0.5)
TARGET_FPR_TEXT = f'({TARGET_FPR_RANGE[0]:g}, {TARGET_FPR_RANGE[1]:g}]'
# The table's rates, evenly spaced in log: lookups interpolate in log(rate).
LEVELS = np.geomspace(TARGET_FPR_RANGE[1], 1e-6, 49)


def valid_target_fpr(target_fpr: float) -> bool:
    """Whether ``target_fpr`` lies in ``TARGET_FPR_RANGE``, the rates a table answers."""
    low, high = TARGET_FPR_RANGE
    return low < target_fpr <= high


def fit_fpr_table(normal_maps: Sequence[np.ndarray]) -> FprTable:
    """Quantiles of the raw patch scores ``(h, w)`` of normal images, per pixel and per image.

    An image's score is its largest patch score: a frame is flagged when any patch is. Images
    may differ in size.
    """
    maps = [np.asarray(m, dtype=np.float64) for m in normal_maps]
    if not maps or any(m.ndim != 2 or m.size == 0 for m in maps):
        shapes = sorted({m.shape for m in maps})[:3]
        raise ValueError(f'expected non-empty (h, w) normal score maps, got shapes {shapes}')
    pixels = np.concatenate([m.ravel() for m in maps])
    image_max = np.array([m.max() for m in maps])
    return FprTable(
        fpr=LEVELS.tolist(),
        pixel=np.quantile(pixels, 1 - LEVELS, method='higher').tolist(),
        image=np.quantile(image_max, 1 - LEVELS, method='higher').tolist(),
        n_pixels=int(pixels.size),
        n_images=len(maps),
    )


def fpr_thresholds(table: FprTable, target_fpr: float) -> tuple[float, float]:
    """Raw (pixel, image) thresholds exceeded by ``target_fpr`` of normal pixels / images.

    Below the table's resolution (one pixel or image in the validation set) the largest
    normal score is returned; ``resolution`` tells callers when that happens.
    """
    if not valid_target_fpr(target_fpr):
        raise ValueError(f'target_fpr must be in {TARGET_FPR_TEXT}, got {target_fpr}')
    x = np.log(np.asarray(table.fpr))[::-1]  # increasing, as np.interp needs
    at = np.log(target_fpr)
    pixel = float(np.interp(at, x, np.asarray(table.pixel)[::-1]))
    image = float(np.interp(at, x, np.asarray(table.image)[::-1]))
    return pixel, image


def resolution(table: FprTable) -> tuple[float, float]:
    """The smallest (pixel, image) rates the validation set can tell apart."""
    return 1 / table.n_pixels, 1 / table.n_images
