# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""DINOv2 parameter names: Hugging Face ``Dinov2Model`` and the official release.

The extractor (``dinov2``) uses the official layout, so a Hugging Face checkpoint is renamed
here once at load time, and written back under its own names by ``flowclas-weights``.
"""

from __future__ import annotations

import re

import torch

from flowclas_ros.core.errors import ModelFileError

_HF_TOP = {
    'embeddings.cls_token': 'cls_token',
    'embeddings.mask_token': 'mask_token',
    'embeddings.position_embeddings': 'pos_embed',
    'embeddings.register_tokens': 'register_tokens',
    'embeddings.patch_embeddings.projection.weight': 'patch_embed.proj.weight',
    'embeddings.patch_embeddings.projection.bias': 'patch_embed.proj.bias',
    'layernorm.weight': 'norm.weight',
    'layernorm.bias': 'norm.bias',
}
_HF_BLOCK = {  # Suffixes after 'encoder.layer.{i}.' -> after 'blocks.{i}.'.
    'layer_scale1.lambda1': 'ls1.gamma',
    'layer_scale2.lambda1': 'ls2.gamma',
    **{
        f'{hf}.{p}': f'{off}.{p}'
        for hf, off in (
            ('norm1', 'norm1'),
            ('norm2', 'norm2'),
            ('attention.output.dense', 'attn.proj'),
            ('mlp.fc1', 'mlp.fc1'),
            ('mlp.fc2', 'mlp.fc2'),
            ('mlp.weights_in', 'mlp.w12'),
            ('mlp.weights_out', 'mlp.w3'),
        )
        for p in ('weight', 'bias')
    },
}
_HF_QKV = ('query', 'key', 'value')
_HF_LAYER = re.compile(r'encoder\.layer\.(\d+)\.(.+)')
_OFF_BLOCK = re.compile(r'blocks\.(\d+)\.(.+)')


def from_hf(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename HF keys to official ones; keys it cannot map pass through and show as unexpected."""
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        if key in _HF_TOP:
            out[_HF_TOP[key]] = value
            continue
        m = _HF_LAYER.fullmatch(key)
        rest = m.group(2) if m else ''
        if m and rest in _HF_BLOCK:
            out[f'blocks.{m.group(1)}.{_HF_BLOCK[rest]}'] = value
        elif m and re.fullmatch(r'attention\.attention\.(query|key|value)\.(weight|bias)', rest):
            _, _, part, param = rest.split('.')
            qkv.setdefault((m.group(1), param), {})[part] = value
        else:
            out[key] = value
    for (layer, param), parts in qkv.items():
        if all(p in parts for p in _HF_QKV):
            out[f'blocks.{layer}.attn.qkv.{param}'] = torch.cat([parts[p] for p in _HF_QKV])
        else:
            for part, value in parts.items():
                out[f'encoder.layer.{layer}.attention.attention.{part}.{param}'] = value
    return out


def to_hf(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename official keys to Hugging Face ``Dinov2Model`` ones (qkv split in three)."""
    top = {v: k for k, v in _HF_TOP.items()}
    block = {v: k for k, v in _HF_BLOCK.items()}
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        m = _OFF_BLOCK.fullmatch(key)
        if key in top:
            out[top[key]] = value
        elif m and m.group(2) in block:
            out[f'encoder.layer.{m.group(1)}.{block[m.group(2)]}'] = value
        elif m and m.group(2).startswith('attn.qkv.'):
            param = m.group(2).rsplit('.', 1)[1]
            for part, chunk in zip(_HF_QKV, value.chunk(3), strict=True):
                out[f'encoder.layer.{m.group(1)}.attention.attention.{part}.{param}'] = chunk
        else:
            raise ValueError(f'no Hugging Face name for DINOv2 parameter {key!r}')
    return out


def _strip_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop a wrapper prefix (``dinov2.``, ``backbone.``, ``module.``) and keys outside it."""
    for prefix in ('dinov2.', 'backbone.', 'module.'):
        if any(k.startswith(prefix) for k in state):
            return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    return state


def official_names(state: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """Tensors of either checkpoint format under the official names."""
    state = _strip_prefix(state)
    if 'embeddings.cls_token' in state or any(k.startswith('encoder.layer.') for k in state):
        return from_hf(state)
    if 'cls_token' in state or any(k.startswith('blocks.') for k in state):
        return state
    some = ', '.join(list(state)[:3])
    raise ModelFileError(
        f'{source}: not a DINOv2 checkpoint (no cls_token key; first keys: {some})'
    )
