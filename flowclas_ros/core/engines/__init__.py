# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Backends that run backbone + flow + score: one interface, three ways to run it.

An engine maps ``(1, 3, H, W)`` float RGB in [0, 1] on its device to raw patch scores and
latent norms, each ``(1, h, w)`` float32 on the same device; ``Detector`` does the rest.
"""

from __future__ import annotations

from pathlib import Path

from flowclas_ros.core.engines.base import Engine
from flowclas_ros.core.errors import ConfigError
from flowclas_ros.core.export import model_fingerprint
from flowclas_ros.core.flowclas.model import FlowClasModel

BACKENDS = ('torch', 'onnxruntime', 'tensorrt')

__all__ = ['BACKENDS', 'Engine', 'build_engine']


def build_engine(
    backend: str,
    model: FlowClasModel,
    precision: str = 'fp32',
    model_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    compile_mode: str = 'none',
) -> Engine:
    """The engine for ``backend`` on the model's device.

    Args:
        backend: ``torch``, ``onnxruntime`` or ``tensorrt``.
        model: the loaded model; ONNX-based engines export it on first use of a size.
        precision: ``fp32``, ``fp16`` or (torch only) ``bf16``.
        model_dir: the model's directory; ONNX-based engines name cached files by a hash of it.
        cache_dir: where exported graphs and TensorRT engines are kept between runs (default:
            ``<model_dir>/engines``).
        compile_mode: torch only: ``none``, ``default`` or ``reduce-overhead`` (CUDA graphs).
    """
    if backend == 'torch':
        from flowclas_ros.core.engines.pytorch import TorchEngine

        return TorchEngine(model, precision, compile_mode)
    if backend not in BACKENDS:
        raise ConfigError(f'unknown backend {backend!r}; choose from {BACKENDS}')
    if model_dir is None:
        raise ConfigError(f'backend {backend} needs the model directory to cache its graphs')
    cache = Path(cache_dir) if cache_dir else Path(model_dir) / 'engines'
    c = model.config
    weights = c.backbone.weight_files() + (c.fine.backbone.weight_files() if c.fine else [])
    fingerprint = model_fingerprint(model_dir, weights, c.refine, c.grid_shifts)
    if backend == 'onnxruntime':
        from flowclas_ros.core.engines.onnx_runtime import OnnxRuntimeEngine

        return OnnxRuntimeEngine(model, precision, cache, fingerprint)
    from flowclas_ros.core.engines.tensorrt import TensorRTEngine

    return TensorRTEngine(model, precision, cache, fingerprint)
