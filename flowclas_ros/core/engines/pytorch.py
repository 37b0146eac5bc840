# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Eager or compiled PyTorch, with fp16/bf16 autocast: the reference and the fast GPU path."""

from __future__ import annotations

import torch

from flowclas_ros.core.config import PRECISIONS
from flowclas_ros.core.engines.base import Engine
from flowclas_ros.core.errors import ConfigError
from flowclas_ros.core.flowclas.model import FlowClasModel

# The autocast type of each of ``PRECISIONS`` (fp32: no autocast).
_AUTOCAST = {'fp32': None, 'fp16': torch.float16, 'bf16': torch.bfloat16}
COMPILE_MODES = ('none', 'default', 'reduce-overhead', 'max-autotune')


class TorchEngine(Engine):
    """``model.maps(x)`` under autocast, optionally ``torch.compile``d.

    ``reduce-overhead`` captures CUDA graphs, which removes per-kernel launch cost at batch 1.
    """

    def __init__(self, model: FlowClasModel, precision: str = 'fp32', compile_mode: str = 'none'):
        if precision not in PRECISIONS:
            raise ConfigError(f'unknown precision {precision!r}; choose from {PRECISIONS}')
        if compile_mode not in COMPILE_MODES:
            raise ConfigError(
                f'unknown compile mode {compile_mode!r}; choose from {COMPILE_MODES}'
            )
        device = model.device
        if precision == 'fp16' and device.type != 'cuda':
            raise ConfigError('fp16 needs a CUDA device; use bf16 or fp32 on the CPU')
        self.model = model
        self.precision = precision
        self.device_type = device.type
        self._run = self._forward
        if compile_mode != 'none':
            self._run = torch.compile(self._forward, mode=compile_mode)

    def _forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.maps(images)

    def autocast(self) -> torch.autocast:
        """The precision context the engine runs in (the benchmark times stages inside it)."""
        dtype = _AUTOCAST[self.precision]
        return torch.autocast(self.device_type, dtype=dtype, enabled=dtype is not None)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with self.autocast():
            scores, norms = self._run(images)
        return scores.float(), norms.float()
