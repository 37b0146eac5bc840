# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Raw scores -> calibrated [0, 1] scores, fitted on normal validation pixels.

A fixed range lets heatmaps and thresholds mean the same thing across frames and models.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from flowclas_ros.core.config import Calibration

_QUANTILES = (0.5, 0.9, 0.99, 0.999)


def fit_calibration(normal_scores: np.ndarray) -> Calibration:
    """Fit on raw scores of normal pixels (any shape); NaNs are an error upstream."""
    values = np.asarray(normal_scores, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError('calibration needs normal pixels')
    q = {f'{p:g}': float(np.quantile(values, p)) for p in _QUANTILES}
    center = q['0.99']
    width = max((center - q['0.5']) / 3, 1e-6)
    return Calibration(center=center, width=width, quantiles=q)


def calibrate(scores: torch.Tensor, calibration: Calibration) -> torch.Tensor:
    """``sigmoid((s - center) / width)``: 0.5 at the normal 99th percentile, monotone."""
    return torch.sigmoid((scores - calibration.center) / calibration.width)


def smooth(scores: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(B, h, w)`` maps; edges replicate, so borders stay unbiased."""
    if sigma <= 0:
        return scores
    radius = math.ceil(3 * sigma)
    t = torch.arange(-radius, radius + 1, dtype=scores.dtype, device=scores.device)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    x = F.pad(scores[:, None], (radius, radius, radius, radius), mode='replicate')
    x = F.conv2d(x, kernel.view(1, 1, 1, -1))
    return F.conv2d(x, kernel.view(1, 1, -1, 1))[:, 0]
