# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Colour maps and overlays for people: heatmaps over a fixed range, masks, blends."""

from __future__ import annotations

import numpy as np

# Anchors of a perceptually ordered dark-blue -> red -> yellow -> white ramp (inferno-like).
_ANCHORS = np.array(
    [
        [0, 0, 4],
        [40, 11, 84],
        [101, 21, 110],
        [159, 42, 99],
        [212, 72, 66],
        [245, 125, 21],
        [250, 193, 39],
        [252, 255, 164],
    ],
    dtype=np.float64,
)
_POS = np.linspace(0, 1, len(_ANCHORS))
LUT = np.stack([np.interp(np.linspace(0, 1, 256), _POS, _ANCHORS[:, c]) for c in range(3)], 1)
LUT = LUT.round().astype(np.uint8)


def heatmap(scores: np.ndarray, lo: float = 0.0, hi: float = 1.0) -> np.ndarray:
    """``(H, W)`` scores -> ``(H, W, 3)`` uint8 RGB over the fixed range [lo, hi].

    NaNs map to the low end so a bad pixel never paints the display.
    """
    x = (np.nan_to_num(scores, nan=lo) - lo) / max(hi - lo, 1e-12)
    idx = np.clip(x * 255 + 0.5, 0, 255).astype(np.uint8)
    return LUT[idx]


def overlay(image: np.ndarray, colour: np.ndarray, weight: float = 0.5) -> np.ndarray:
    """Blend a ``(H, W, 3)`` uint8 colour image onto an RGB image of the same size."""
    out = image.astype(np.float32) * (1 - weight) + colour.astype(np.float32) * weight
    return out.round().astype(np.uint8)
