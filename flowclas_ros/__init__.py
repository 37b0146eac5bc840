# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""flowclas_ros: per-pixel anomaly segmentation for robot cameras (FlowCLAS).

The Python API, imported on first use (``import flowclas_ros`` alone does not load torch):
``ModelConfig``, ``train``, ``load_model``, ``Detector``, ``split_frames`` and ``evaluate``.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = '0.1.0'

_API = {
    'ModelConfig': 'flowclas_ros.core.config',
    'train': 'flowclas_ros.core.flowclas.train.trainer',
    'load_model': 'flowclas_ros.core.flowclas.model',
    'Detector': 'flowclas_ros.core.inference',
    'split_frames': 'flowclas_ros.core.data.frames',
    'evaluate': 'flowclas_ros.core.evaluate',
}
__all__ = ['__version__', *_API]


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    return getattr(importlib.import_module(_API[name]), name)
