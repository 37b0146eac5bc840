# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Which torch device to run on, decided once for the tools and the node alike."""

from __future__ import annotations

import torch

from flowclas_ros.core.errors import ConfigError


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when available; an explicit ``cuda`` without a GPU is an error."""
    if device == 'auto':
        return 'cuda' if torch.cuda.is_available() else 'cpu'
    if device.startswith('cuda') and not torch.cuda.is_available():
        raise ConfigError(f'device {device!r} was asked for but no CUDA device is available')
    if device != 'cpu' and not device.startswith('cuda'):
        raise ConfigError(f'unknown device {device!r}; use auto, cpu, cuda or cuda:N')
    return device
