# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Affine coupling whose subnet is a small conv net over the feature grid."""

from __future__ import annotations

import torch
from torch import nn


class AffineCoupling(nn.Module):
    """Transforms the second channel half conditioned on the first.

    ``y2 = x2 * exp(s) + t`` with ``(s, t) = subnet(x1)``. The scale is soft-clamped as
    ``clamp * tanh(s / clamp)`` so a single step cannot explode, and the subnet's last conv
    starts at zero so an untrained flow is the identity (stable first steps).

    Args:
        channels: feature channels C.
        kernel: subnet conv kernel (3 mixes neighbouring patches, 1 is per patch).
        hidden_ratio: subnet width as a multiple of C.
        clamp: bound on |s|.

    Sizes have no defaults here: a model's come from its ``FlowConfig``, the one home of them.
    """

    def __init__(self, channels: int, kernel: int, hidden_ratio: float, clamp: float) -> None:
        super().__init__()
        self.split = channels // 2
        rest = channels - self.split
        hidden = max(8, int(round(channels * hidden_ratio)))
        pad = kernel // 2
        self.subnet = nn.Sequential(
            # Replicate padding: zeros would make every border patch look unusual.
            nn.Conv2d(self.split, hidden, kernel, padding=pad, padding_mode='replicate'),
            nn.ReLU(),
            nn.Conv2d(hidden, 2 * rest, kernel, padding=pad, padding_mode='replicate'),
        )
        nn.init.zeros_(self.subnet[-1].weight)
        nn.init.zeros_(self.subnet[-1].bias)
        self.clamp = clamp

    def _scale_shift(self, x1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s, t = self.subnet(x1).chunk(2, dim=1)
        return self.clamp * torch.tanh(s / self.clamp), t

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``y`` and the per-pixel log-det ``(B, H, W)``."""
        x1, x2 = x[:, : self.split], x[:, self.split :]
        s, t = self._scale_shift(x1)
        return torch.cat([x1, x2 * torch.exp(s) + t], dim=1), s.sum(dim=1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        y1, y2 = y[:, : self.split], y[:, self.split :]
        s, t = self._scale_shift(y1)
        return torch.cat([y1, (y2 - t) * torch.exp(-s)], dim=1)
