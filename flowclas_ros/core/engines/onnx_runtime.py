# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""ONNX Runtime on the exported graph: CPU here, the CUDA execution provider where present."""

from __future__ import annotations

from pathlib import Path
import warnings

import numpy as np
import torch

from flowclas_ros.core.engines.base import Engine, ExportedGraphs
from flowclas_ros.core.errors import ConfigError, ModelFileError
from flowclas_ros.core.export import INPUT_NAME, OUTPUT_NAMES
from flowclas_ros.core.flowclas.model import FlowClasModel


class OnnxRuntimeEngine(Engine):
    """One ``InferenceSession`` per input size; on CUDA, torch tensors are bound in place."""

    def __init__(
        self, model: FlowClasModel, precision: str, cache_dir: Path, fingerprint: str
    ) -> None:
        try:
            import onnxruntime
        except ImportError as exc:
            raise ConfigError(
                "backend onnxruntime needs it installed: pip install 'flowclas_ros[onnx]'"
            ) from exc
        self._ort = onnxruntime
        self.precision = precision
        self.graphs = ExportedGraphs(model, precision, cache_dir, fingerprint)
        self.device = model.device
        available = onnxruntime.get_available_providers()
        if self.device.type == 'cuda':
            if 'CUDAExecutionProvider' not in available:
                raise ConfigError(
                    'onnxruntime has no CUDA execution provider here '
                    f'(available: {", ".join(available)}); install onnxruntime-gpu or use cpu'
                )
            self.providers = [
                ('CUDAExecutionProvider', {'device_id': self.device.index or 0}),
                'CPUExecutionProvider',
            ]
        else:
            if precision == 'fp16':
                raise ConfigError('onnxruntime fp16 needs CUDA; use fp32 on the CPU')
            self.providers = ['CPUExecutionProvider']
        self._sessions: dict[tuple[int, int], object] = {}

    def _open(self, path: Path):  # noqa: ANN202 - onnxruntime.InferenceSession
        options = self._ort.SessionOptions()
        options.graph_optimization_level = self._ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        return self._ort.InferenceSession(str(path), options, providers=self.providers)

    def _session(self, size: tuple[int, int]):  # noqa: ANN202 - onnxruntime.InferenceSession
        if size not in self._sessions:
            path = self.graphs.path(size)
            try:
                session = self._open(path)
            except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types
                # A cached graph cut short (a full disk, a copy interrupted): export it again.
                reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
                warnings.warn(
                    f'cached graph {path} cannot be loaded ({reason}); exporting it again',
                    stacklevel=2,
                )
                path.unlink(missing_ok=True)
                path = self.graphs.path(size)
                try:
                    session = self._open(path)
                except Exception as again:  # noqa: BLE001
                    raise ModelFileError(f'onnxruntime cannot load {path}: {again}') from again
            self._sessions[size] = session
        return self._sessions[size]

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        session = self._session(tuple(images.shape[-2:]))
        if self.device.type != 'cuda':
            outputs = session.run(list(OUTPUT_NAMES), {INPUT_NAME: images.numpy()})
            scores, norms = (torch.from_numpy(o) for o in outputs)
            return scores, norms
        images = images.contiguous()
        binding = session.io_binding()
        index = self.device.index or 0
        binding.bind_input(
            INPUT_NAME, 'cuda', index, np.float32, list(images.shape), images.data_ptr()
        )
        outputs = []
        for name, meta in zip(OUTPUT_NAMES, session.get_outputs(), strict=True):
            out = torch.empty(meta.shape, dtype=torch.float32, device=self.device)
            binding.bind_output(name, 'cuda', index, np.float32, list(out.shape), out.data_ptr())
            outputs.append(out)
        session.run_with_iobinding(binding)
        scores, norms = outputs
        return scores, norms
