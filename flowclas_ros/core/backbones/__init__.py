# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Frozen feature extractors behind one interface, built by name."""

from flowclas_ros.core.backbones.base import FeatureExtractor
from flowclas_ros.core.backbones.registry import BACKBONE_NAMES, build_backbone

__all__ = ['BACKBONE_NAMES', 'FeatureExtractor', 'build_backbone']
