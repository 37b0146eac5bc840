# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Fixed random channel shuffle, so every channel is transformed by some coupling."""

from __future__ import annotations

import torch
from torch import nn


class ChannelPermutation(nn.Module):
    """Volume-preserving (log-det 0); the permutation is a buffer, saved with the weights."""

    def __init__(self, channels: int, seed: int) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        perm = torch.randperm(channels, generator=generator)
        self.register_buffer('perm', perm)
        self.register_buffer('inverse_perm', torch.argsort(perm))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``y`` and a zero per-pixel log-det ``(B, H, W)``."""
        logdet = x.new_zeros(x.shape[0], x.shape[2], x.shape[3])
        return x.index_select(1, self.perm), logdet

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y.index_select(1, self.inverse_perm)
