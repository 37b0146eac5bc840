# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""The FlowCLAS flow: L x (ActNorm, permutation, coupling) and a diagonal Gaussian base."""

from __future__ import annotations

import math

import torch
from torch import nn

from flowclas_ros.core.flowclas.flow.actnorm import ActNorm
from flowclas_ros.core.flowclas.flow.coupling import AffineCoupling
from flowclas_ros.core.flowclas.flow.permutation import ChannelPermutation

_LOG_2PI = math.log(2 * math.pi)


class GaussianBase(nn.Module):
    """Diagonal Gaussian with learnable per-channel mean and log-std."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.mean = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.log_std = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def standardize(self, z: torch.Tensor) -> torch.Tensor:
        """``(z - mu) / sigma``: N(0, I) under the model, the input of the NFA test."""
        return (z - self.mean) * torch.exp(-self.log_std)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """Per-pixel log-density ``(B, H, W)`` summed over channels."""
        zt = self.standardize(z)
        per_channel = -0.5 * zt.square() - self.log_std - 0.5 * _LOG_2PI
        return per_channel.sum(dim=1)


class Flow(nn.Module):
    """Maps features ``(B, C, H, W)`` to latents of the same shape, with exact log-density.

    Subnet kernels alternate 3 (even steps) and 1 (odd steps), as in FastFlow. The size
    (``steps``, ``hidden_ratio``, ``clamp``) and the permutations' ``seed`` are a
    ``FlowConfig``'s, with no defaults here: ``FlowConfig`` is their one home.
    """

    def __init__(
        self, channels: int, steps: int, hidden_ratio: float, clamp: float, seed: int
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(steps):
            layers += [
                ActNorm(channels),
                ChannelPermutation(channels, seed + i),
                AffineCoupling(channels, 3 if i % 2 == 0 else 1, hidden_ratio, clamp),
            ]
        self.layers = nn.ModuleList(layers)
        self.base = GaussianBase(channels)
        self.channels = channels

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return latent ``z`` ``(B, C, H, W)`` and summed log-det ``(B, H, W)``."""
        logdet = x.new_zeros(x.shape[0], x.shape[2], x.shape[3])
        for layer in self.layers:
            x, ld = layer(x)
            logdet = logdet + ld
        return x, logdet

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        for layer in reversed(self.layers):
            z = layer.inverse(z)
        return z

    def log_prob(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-pixel ``log p(x)`` ``(B, H, W)`` (change of variables) and the latent."""
        z, logdet = self(x)
        return self.base.log_prob(z) + logdet, z
