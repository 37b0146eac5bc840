# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Which torch device to run on, decided once for the tools and the node alike."""

from __future__ import annotations

from pathlib import Path
import platform

import torch

from flowclas_ros.core.errors import ConfigError

# What the Python API (``train``, ``load_model``, ``Detector.load``) and the node run on when
# not told: the GPU when there is one.
DEFAULT_DEVICE = 'auto'


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when available; an explicit ``cuda`` without a GPU is an error."""
    if device == 'auto':
        return 'cuda' if torch.cuda.is_available() else 'cpu'
    if device.startswith('cuda') and not torch.cuda.is_available():
        raise ConfigError(f'device {device!r} was asked for but no CUDA device is available')
    if device != 'cpu' and not device.startswith('cuda'):
        raise ConfigError(f'unknown device {device!r}; use auto, cpu, cuda or cuda:N')
    return device


def torch_device(device: str | torch.device) -> torch.device:
    """``device`` for torch, ``auto`` resolved; other names are passed on as given."""
    return torch.device(resolve_device(device) if device == 'auto' else device)


def hardware_name(device: str) -> str:
    """What runs the model, for diagnostics: the GPU's name, else the CPU model.

    ARM boards (Jetson) have no ``model name`` in /proc/cpuinfo; their device-tree model
    (``NVIDIA Jetson AGX Orin ...``) says more than the architecture.
    """
    if device.startswith('cuda'):
        return torch.cuda.get_device_name(torch.device(device))
    for path, key in (('/proc/cpuinfo', 'model name'), ('/proc/device-tree/model', '')):
        try:
            text = Path(path).read_text(errors='replace')
        except OSError:
            continue
        for line in text.splitlines():
            name, _, value = line.partition(':') if key else ('', '', line)
            if name.strip() == key and value.strip(' \x00'):
                return value.strip(' \x00')
    return platform.processor() or platform.machine() or 'cpu'
