# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Anomaly-segmentation metrics: streaming histogram accumulators and exact references.

Numpy and scipy only, so evaluation runs anywhere the core does (no torch, no ROS).
"""

from flowclas_ros.core.metrics.aupro import AuproMetric
from flowclas_ros.core.metrics.pixel import PixelMetrics
from flowclas_ros.core.metrics.reference import exact_aupro, exact_pixel_metrics

__all__ = ['AuproMetric', 'PixelMetrics', 'exact_aupro', 'exact_pixel_metrics']
