# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Reading backbone checkpoints safely, whatever their format, with one-line errors.

Only tensors are ever materialised: ``.pth`` files go through ``torch.load(weights_only=True)``
and safetensors through its own reader. The format is told from the content, not the name.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from safetensors.torch import load_file
import torch

from flowclas_ros.core.errors import ModelFileError

HF_FILE = 'model.safetensors'
HF_INDEX = 'model.safetensors.index.json'


def _is_safetensors(path: Path) -> bool:
    """Safetensors starts with a little-endian u64 header length and a JSON object."""
    with open(path, 'rb') as f:
        head = f.read(9)
    size = int.from_bytes(head[:8], 'little') if len(head) == 9 else 0
    return head[8:9] == b'{' and 0 < size < path.stat().st_size


def _read(path: Path) -> object:
    if path.is_dir():
        index = path / HF_INDEX
        if (path / HF_FILE).is_file():
            path = path / HF_FILE
        elif index.is_file():
            shards = sorted(set(json.loads(index.read_text())['weight_map'].values()))
            state: dict[str, torch.Tensor] = {}
            for shard in shards:
                state.update(load_file(str(path / shard), device='cpu'))
            return state
        else:
            raise ModelFileError(f'{path}: directory has no {HF_FILE} or {HF_INDEX}')
    if not path.is_file():
        raise ModelFileError(f'weight file not found: {path}')
    if _is_safetensors(path):
        return load_file(str(path), device='cpu')
    # A file object, not the path: recent torch picks a loader from the extension.
    with open(path, 'rb') as f:
        return torch.load(f, map_location='cpu', weights_only=True)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f'{type(exc).__name__}: {text[0][:200]}' if text else type(exc).__name__


def _unwrap(obj: object) -> dict[str, torch.Tensor] | None:
    """Accept a bare state dict or one nested under a usual training-checkpoint key."""
    if isinstance(obj, dict):
        for wrapper in ('model', 'state_dict', 'teacher'):
            if isinstance(obj.get(wrapper), dict):
                obj = obj[wrapper]
                break
    if not isinstance(obj, dict) or not obj:
        return None
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        return None
    return obj


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Named tensors from a ``.pth``/``.pt`` file, a safetensors file, or an HF model folder.

    Raises:
        ModelFileError: missing, unreadable or unsafe file, or no state dict of tensors in it.
    """
    path = Path(path)
    try:
        raw = _read(path)
    except ModelFileError:
        raise
    except Exception as exc:  # any failure to parse means a bad file
        raise ModelFileError(f'{path}: not a readable weight file ({_first_line(exc)})') from exc
    state = _unwrap(raw)
    if state is None:
        raise ModelFileError(f'{path}: does not hold a state dict of named tensors')
    return state
