# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Two frozen encoders on one frame, their features concatenated on the first one's grid.

A CNN and a ViT see defects differently: on Magnetic-Tile, EfficientNet-Lite0 ranks large,
faint regions well and DINOv2 thin cracks. One flow over both feature sets models their joint
density, so a patch is unusual when either view of it is.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812

from flowclas_ros.core.backbones.base import FeatureExtractor


class Stacked(FeatureExtractor):
    """``primary`` features with ``extra``'s appended, pooled to the primary grid.

    ``extra`` sees the frame resized so that ``pool`` x ``pool`` of its cells cover one primary
    cell, with ``pool`` chosen to keep that resize nearest to the frame's own scale (a ViT/14
    under a stride-32 CNN: pool 2, the frame at 0.875 of its size). Sizes are static, so the
    graph exports to ONNX like either encoder alone.
    """

    def __init__(self, primary: FeatureExtractor, extra: FeatureExtractor) -> None:
        super().__init__()
        self.primary = primary
        self.extra = extra
        self.pool = max(1, round(primary.stride / extra.stride))
        self.out_dim = primary.out_dim + extra.out_dim
        self.stride = primary.stride
        self.size_multiple = primary.size_multiple

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.tapped(images)[0]

    def tapped(
        self, images: torch.Tensor, stride: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``forward``'s features and the primary trunk's activation at ``stride``."""
        if stride is None:
            feats, kept = self.primary(images), None
        else:
            feats, kept = self.primary.tapped(images, stride)
        h, w = int(feats.shape[2]), int(feats.shape[3])
        cell = self.extra.stride * self.pool
        resized = F.interpolate(
            images, size=(h * cell, w * cell), mode='bilinear', align_corners=False
        )
        more = self.extra(resized)
        if self.pool > 1:
            more = F.avg_pool2d(more, self.pool)
        return torch.cat([feats, more.to(feats.dtype)], dim=1), kept
