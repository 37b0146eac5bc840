# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Per-channel affine normalization initialised from the first batch (Glow's ActNorm)."""

from __future__ import annotations

import torch
from torch import nn


class ActNorm(nn.Module):
    """``y = (x + bias) * exp(log_scale)``; the first training batch sets zero mean, unit std.

    Data-dependent init lets the flow start on standardized features whatever the backbone's
    scale, which matters for frozen features whose channels differ by orders of magnitude.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.log_scale = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.register_buffer('initialized', torch.tensor(False))

    @torch.no_grad()
    def _init_from(self, x: torch.Tensor) -> None:
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        std = x.std(dim=(0, 2, 3), keepdim=True)
        self.bias.copy_(-mean)
        self.log_scale.copy_(-torch.log(std.clamp_min(1e-6)))
        self.initialized.fill_(True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``y`` and the per-pixel log-det ``(B, H, W)``."""
        if self.training and not bool(self.initialized):
            self._init_from(x)
        y = (x + self.bias) * torch.exp(self.log_scale)
        logdet = self.log_scale.sum().expand(x.shape[0], x.shape[2], x.shape[3])
        return y, logdet

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * torch.exp(-self.log_scale) - self.bias
