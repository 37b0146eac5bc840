# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""flowclas_ros: per-pixel anomaly segmentation for robot cameras (FlowCLAS)."""

__version__ = '0.1.0'
