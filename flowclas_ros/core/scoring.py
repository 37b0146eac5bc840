# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Raw scores -> calibrated [0, 1] scores, fitted on normal validation pixels.

A fixed range lets heatmaps and thresholds mean the same thing across frames and models.
"""

from __future__ import annotations

import numpy as np
import torch

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
