# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""TensorRT engines built from the exported graph and cached, keyed so a stale one is never used.

An engine only runs on the GPU model and TensorRT version that built it, and building takes
minutes (much longer on a Jetson). So each engine file has a JSON of its key beside it: the
graph's hash, precision, input shape, GPU name, compute capability and TensorRT version. On a
mismatch the engine is rebuilt, or, with ``on_mismatch='fail'``, loading fails naming the keys
that differ. Execution uses the TensorRT 10 named-tensor API with torch CUDA tensors as buffers.

Not verified in CI (TensorRT does not install there): the build and run calls. Verified: keys,
cache decisions and error paths.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
import warnings

import torch

from flowclas_ros.core.config import EXPORT_PRECISIONS
from flowclas_ros.core.engines.base import Engine, ExportedGraphs
from flowclas_ros.core.errors import ConfigError, ModelFileError
from flowclas_ros.core.export import INPUT_NAME, OUTPUT_NAMES
from flowclas_ros.core.flowclas.model import FlowClasModel
from flowclas_ros.core.jsonio import write_atomic, write_json

WORKSPACE_BYTES = 2 << 30


def engine_key(
    onnx_path: Path, precision: str, shape: tuple[int, ...], device: dict[str, str]
) -> dict[str, str]:
    """Everything an engine file is only valid for."""
    return {
        'onnx_sha256': hashlib.sha256(onnx_path.read_bytes()).hexdigest(),
        'precision': precision,
        'input_shape': 'x'.join(str(int(s)) for s in shape),
        **device,
    }


def mismatched(expected: dict[str, str], found: dict[str, str]) -> list[str]:
    """``key: found -> expected`` for each key that differs (missing keys included)."""
    return [
        f'{k}: {found.get(k, "<missing>")} -> {v}'
        for k, v in expected.items()
        if found.get(k) != v
    ]


def store_engine(path: Path, blob: bytes, key: dict[str, str]) -> None:
    """Write an engine and its key (with the engine's own hash), each atomically."""
    write_atomic(path, blob)
    write_json(
        path.with_suffix('.json'), key | {'engine_sha256': hashlib.sha256(blob).hexdigest()}
    )


def cached_engine(path: Path, expected: dict[str, str], on_mismatch: str) -> bytes | None:
    """The cached engine's bytes when its key matches; None when it must be (re)built.

    An engine whose bytes do not match the hash recorded when it was built (cut short by a full
    disk, say) is rebuilt with a warning, or refused when ``on_mismatch`` is ``fail``.
    """
    meta = path.with_suffix('.json')
    if not path.is_file() or not meta.is_file():
        return None
    try:
        found = json.loads(meta.read_text())
    except (OSError, ValueError):
        found = {}
    differ = mismatched(expected, found)
    problem = f'was built for something else ({"; ".join(differ)})'
    if not differ:
        blob = path.read_bytes()
        if hashlib.sha256(blob).hexdigest() == found.get('engine_sha256'):
            return blob
        problem = 'is damaged (its bytes do not match the hash recorded at build time)'
    if on_mismatch == 'fail':
        raise ModelFileError(
            f'cached TensorRT engine {path} {problem}; delete it or allow a rebuild'
        )
    if not differ:
        warnings.warn(f'cached TensorRT engine {path} {problem}; rebuilding it', stacklevel=2)
    return None


class TensorRTEngine(Engine):
    def __init__(
        self,
        model: FlowClasModel,
        precision: str,
        cache_dir: Path,
        fingerprint: str,
        on_mismatch: str = 'rebuild',
    ) -> None:
        if precision not in EXPORT_PRECISIONS:
            raise ConfigError(f'tensorrt precision must be one of {EXPORT_PRECISIONS}')
        if on_mismatch not in ('rebuild', 'fail'):
            raise ConfigError("on_mismatch must be 'rebuild' or 'fail'")
        try:
            import tensorrt
        except ImportError as exc:
            raise ConfigError(
                'backend tensorrt needs the TensorRT Python package (JetPack ships it; on x86: '
                'pip install tensorrt); or use backend onnxruntime or torch'
            ) from exc
        self.device = model.device
        if self.device.type != 'cuda':
            raise ConfigError('backend tensorrt needs a CUDA device')
        self._trt = tensorrt
        self.precision = precision
        self.on_mismatch = on_mismatch
        # The graph is exported in fp32; the builder picks fp16 per layer where it is allowed.
        self.graphs = ExportedGraphs(model, 'fp32', cache_dir, fingerprint)
        self._logger = tensorrt.Logger(tensorrt.Logger.WARNING)
        self._contexts: dict[tuple[int, int], tuple[object, object]] = {}

    def device_key(self) -> dict[str, str]:
        major, minor = torch.cuda.get_device_capability(self.device)
        return {
            'gpu': torch.cuda.get_device_name(self.device),
            'compute_capability': f'{major}.{minor}',
            'tensorrt': self._trt.__version__,
        }

    def _build(self, onnx_path: Path) -> bytes:
        trt = self._trt
        builder = trt.Builder(self._logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, self._logger)
        if not parser.parse(onnx_path.read_bytes()):
            errors = '; '.join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise ModelFileError(f'TensorRT cannot parse {onnx_path}: {errors}')
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
        if self.precision == 'fp16':
            config.set_flag(trt.BuilderFlag.FP16)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise ModelFileError(f'TensorRT could not build an engine from {onnx_path}')
        return bytes(serialized)

    def _context(self, size: tuple[int, int]) -> tuple[object, object]:
        if size not in self._contexts:
            onnx_path = self.graphs.path(size)
            expected = engine_key(onnx_path, self.precision, (1, 3, *size), self.device_key())
            path = onnx_path.with_name(f'{onnx_path.stem}_{self.precision}.engine')
            blob = cached_engine(path, expected, self.on_mismatch)
            if blob is None:
                blob = self._build(onnx_path)
                store_engine(path, blob, expected)
            engine = self._trt.Runtime(self._logger).deserialize_cuda_engine(blob)
            if engine is None:
                raise ModelFileError(f'TensorRT could not load {path}; delete it to rebuild')
            self._contexts[size] = (engine, engine.create_execution_context())
        return self._contexts[size]

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        engine, context = self._context(tuple(images.shape[-2:]))
        images = images.contiguous()
        context.set_tensor_address(INPUT_NAME, images.data_ptr())
        outputs = []
        for name in OUTPUT_NAMES:
            shape = tuple(engine.get_tensor_shape(name))
            out = torch.empty(shape, dtype=torch.float32, device=self.device)
            context.set_tensor_address(name, out.data_ptr())
            outputs.append(out)
        if not context.execute_async_v3(torch.cuda.current_stream(self.device).cuda_stream):
            raise RuntimeError('TensorRT execution failed')
        scores, norms = outputs
        return scores, norms
