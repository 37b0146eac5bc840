# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Colour maps and overlays for people: heatmaps over a fixed range, masks, blends."""

from __future__ import annotations

import numpy as np
import torch

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


_LUTS: dict[torch.device, torch.Tensor] = {}


def heatmap(
    scores: np.ndarray | torch.Tensor, lo: float = 0.0, hi: float = 1.0
) -> np.ndarray | torch.Tensor:
    """``(H, W)`` scores -> ``(H, W, 3)`` uint8 RGB over the fixed range [lo, hi].

    A tensor is coloured on its device (the node colours where the model ran and copies back
    once), an array with NumPy (faster on a CPU than torch here); the two give the same bytes.
    NaNs map to the low end so a bad pixel never paints the display.
    """
    if isinstance(scores, torch.Tensor):
        lut = _LUTS.get(scores.device)
        if lut is None:
            lut = _LUTS[scores.device] = torch.from_numpy(LUT).to(scores.device)
        x = (torch.nan_to_num(scores, nan=lo) - lo) / max(hi - lo, 1e-12)
        return lut[(x * 255 + 0.5).clamp_(0, 255).long()]
    x = np.nan_to_num(scores, nan=lo)  # a copy, so the steps below may work in place
    with np.errstate(over='ignore'):  # inf became the largest float: it clips to 255
        x -= lo
        x /= max(hi - lo, 1e-12)
        x *= 255
        x += 0.5
    idx = np.clip(x, 0, 255, out=x).astype(np.uint8)
    return np.take(LUT, idx, axis=0)  # three times faster than LUT[idx] here


def overlay(
    image: np.ndarray | torch.Tensor, colour: np.ndarray | torch.Tensor, weight: float = 0.5
) -> np.ndarray | torch.Tensor:
    """Blend a ``(H, W, 3)`` uint8 colour image onto an RGB image of the same size.

    Tensors (on one device) or arrays, returned as given; the two give the same bytes.
    """
    if isinstance(image, torch.Tensor):
        out = image.float() * (1 - weight) + colour.float() * weight
        return out.round_().to(torch.uint8)
    out = image.astype(np.float32) * (1 - weight) + colour.astype(np.float32) * weight
    return out.round().astype(np.uint8)
