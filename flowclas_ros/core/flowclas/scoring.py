# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Raw scores -> calibrated [0, 1] scores, fitted on normal validation pixels.

A fixed range lets heatmaps and thresholds mean the same thing across frames and models.
"""

from __future__ import annotations

from collections.abc import Sequence
import math

import numpy as np
import torch
import torch.nn.functional as F

from flowclas_ros.core.config import PEAK_FRACTION, Calibration
from flowclas_ros.core.thresholds.fpr import fit_fpr_table
from flowclas_ros.core.thresholds.nfa import fit_null
from flowclas_ros.core.thresholds.outline import best_outline_threshold

_QUANTILES = (0.5, 0.9, 0.99, 0.999)


def fit_calibration(
    normal_maps: Sequence[np.ndarray],
    normal_norms: Sequence[np.ndarray] | None = None,
    outlines: Sequence[tuple[np.ndarray, np.ndarray]] = (),
    peak_fraction: float = PEAK_FRACTION,
) -> Calibration:
    """Fit on the raw patch score maps ``(h, w)`` of normal images (sizes may differ).

    Also stores the false-positive-rate table (per pixel and per image) for ``mask_mode=fpr``
    and, given the images' latent norms, the fitted null of the NFA rule. Given ``outlines``
    (full-size raw scores and labels of frames with anomalies), 0.5 moves up from the normal
    99th percentile to the cut that outlines them best, never down; masks are trimmed by
    ``peak_fraction`` towards their peaks by default only where 0.5 stays at the percentile.
    NaNs are an error upstream.
    """
    table = fit_fpr_table(normal_maps)
    pixels = np.concatenate([np.asarray(m, dtype=np.float64).ravel() for m in normal_maps])
    q = {f'{p:g}': float(np.quantile(pixels, p)) for p in _QUANTILES}
    outline = best_outline_threshold(outlines)
    center = q['0.99'] if outline is None else max(q['0.99'], outline)
    width = max((center - q['0.5']) / 3, 1e-6)
    null = None
    if normal_norms is not None:
        null = fit_null(
            np.concatenate([np.asarray(n, dtype=np.float64).ravel() for n in normal_norms])
        )
    return Calibration(
        center=center,
        width=width,
        quantiles=q,
        fpr=table,
        latent_null=null,
        peak_fraction=peak_fraction if center == q['0.99'] else 0.0,
    )


def calibrate(scores: torch.Tensor, calibration: Calibration) -> torch.Tensor:
    """0.5 at ``calibration.center``, monotone; see ``Calibration`` for the shape."""
    z = (scores - calibration.center) / calibration.width
    upper = 1 - 0.5 / (1 + z.clamp(min=0) / 4).square()
    return torch.where(z > 0, upper, torch.sigmoid(z))


def uncalibrate(calibrated: np.ndarray, calibration: Calibration) -> np.ndarray:
    """Raw scores back from calibrated ones, e.g. from a recorded ``anomaly/score`` topic."""
    p = np.clip(np.asarray(calibrated, dtype=np.float64), 1e-300, 1 - 1e-16)
    z = np.where(p > 0.5, 4 * (np.sqrt(0.5 / (1 - p)) - 1), np.log(p) - np.log1p(-p))
    return calibration.center + calibration.width * z


def upsample(scores: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear ``(B, h, w)`` -> ``(B, H, W)`` (align_corners False, as the field does)."""
    return F.interpolate(scores[:, None], size=tuple(size), mode='bilinear', align_corners=False)[
        :, 0
    ]


def smoothing_radius(sigma: float) -> int:
    """How many cells each side ``smooth`` reads."""
    return math.ceil(3 * sigma) if sigma > 0 else 0


def smooth(scores: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(B, h, w)`` maps; edges replicate, so borders stay unbiased."""
    if sigma <= 0:
        return scores
    radius = smoothing_radius(sigma)
    t = torch.arange(-radius, radius + 1, dtype=scores.dtype, device=scores.device)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    x = F.pad(scores[:, None], (radius, radius, radius, radius), mode='replicate')
    x = F.conv2d(x, kernel.view(1, 1, 1, -1))
    return F.conv2d(x, kernel.view(1, 1, -1, 1))[:, 0]


def frame_median(scores: torch.Tensor) -> torch.Tensor:
    """Each ``(B, h, w)`` map's lower median, ``(B, 1, 1)``: by sort, which ONNX exports."""
    flat = scores.flatten(1)
    return flat.sort(dim=1).values[:, (flat.shape[1] - 1) // 2, None, None]
