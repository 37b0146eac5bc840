# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""The engine interface and what ONNX-based engines share: one exported graph per input size."""

from __future__ import annotations

from pathlib import Path

import torch

from flowclas_ros.core.errors import ConfigError
from flowclas_ros.core.export import export_onnx
from flowclas_ros.core.flowclas.model import FlowClasModel


class Engine:
    """Raw patch scores and latent norms for a preprocessed batch."""

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(1, 3, H, W)`` float in [0, 1] -> scores and norms, each ``(1, h, w)`` float32."""
        raise NotImplementedError


class ExportedGraphs:
    """Exports the model to ONNX once per input size into ``cache_dir`` and reuses the files."""

    def __init__(
        self, model: FlowClasModel, precision: str, cache_dir: Path, fingerprint: str
    ) -> None:
        self.model = model
        self.precision = precision
        self.cache_dir = cache_dir
        self.fingerprint = fingerprint or 'model'

    def path(self, size: tuple[int, int]) -> Path:
        h, w = size
        path = self.cache_dir / f'{self.fingerprint}_{h}x{w}_{self.precision}.onnx'
        if not path.is_file():
            try:
                self.cache_dir.mkdir(parents=True, exist_ok=True)
                export_onnx(self.model, path.with_suffix('.tmp'), size, self.precision)
            except OSError as exc:
                raise ConfigError(
                    f'cannot write exported graphs to {self.cache_dir} ({exc}); '
                    'choose a writable engine cache directory'
                ) from exc
            path.with_suffix('.tmp').replace(path)  # never leave a half-written graph
        return path
