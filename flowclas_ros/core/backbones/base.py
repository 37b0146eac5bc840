# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""The one interface every frozen feature extractor implements."""

from __future__ import annotations

import torch
from torch import nn


class FeatureExtractor(nn.Module):
    """Frozen image encoder: RGB batch in [0, 1] -> one feature map.

    Subclasses normalize internally (their own mean/std buffers), so callers and exported
    graphs feed plain [0, 1] RGB. Attributes every subclass sets in ``__init__``:

    - ``out_dim``: channels C of the returned map.
    - ``stride``: input pixels per feature cell; inputs must be multiples of ``size_multiple``.
    - ``size_multiple``: required divisor of input height and width.
    """

    out_dim: int
    stride: int
    size_multiple: int

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """Map ``(B, 3, H, W)`` RGB in [0, 1] to features ``(B, C, H / stride, W / stride)``."""
        raise NotImplementedError

    def freeze(self) -> FeatureExtractor:
        """Put in eval mode with gradients off: backbones are never trained here."""
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)
        return self
