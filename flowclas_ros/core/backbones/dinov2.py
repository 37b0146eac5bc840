# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""DINOv2 ViT feature extractors that load the official and Hugging Face checkpoints.

The module layout and parameter names follow the official DINOv2 release exactly, so its
``*_pretrain.pth`` state dicts load strictly without renaming; Hugging Face ``facebook/dinov2-*``
safetensors are renamed to that layout first. Weights are only read from local paths the user
gives, ``.pth`` files only through ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from dataclasses import dataclass
import io
import os
from pathlib import Path

import torch
from torch import nn
import torch.nn.functional as F

from flowclas_ros.core.backbones.base import FeatureExtractor
from flowclas_ros.core.backbones.checkpoint import HF_FILE, read_state_dict
from flowclas_ros.core.backbones.dinov2_names import official_names, to_hf
from flowclas_ros.core.config import DINOV2_LAYERS
from flowclas_ros.core.errors import ConfigError, ModelFileError
from flowclas_ros.core.jsonio import write_atomic

PATCH = 14
_POS_GRID = 37  # Official checkpoints carry positional embeddings for 518 px = 37 * 14.
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)
_NUM_REGISTERS = 4


@dataclass(frozen=True)
class _Spec:
    dim: int
    depth: int
    heads: int
    swiglu: bool = False


_SPECS = {
    'dinov2_vits14': _Spec(384, 12, 6),
    'dinov2_vitb14': _Spec(768, 12, 12),
    'dinov2_vitl14': _Spec(1024, 24, 16),
    'dinov2_vitg14': _Spec(1536, 40, 24, swiglu=True),
}

DINOV2_NAMES: tuple[str, ...] = tuple(n + s for n in _SPECS for s in ('', '_reg'))


class _PatchEmbed(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=PATCH, stride=PATCH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class _LayerScale(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class _SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.w12 = nn.Linear(dim, 2 * hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, value = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(gate) * value)


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int, swiglu: bool) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = _Attention(dim, heads)
        self.ls1 = _LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        if swiglu:
            # Official SwiGLU keeps ~the parameter count of a 4x MLP: 2/3 of 4*dim, rounded to 8.
            self.mlp: nn.Module = _SwiGLU(dim, (int(4 * dim * 2 / 3) + 7) // 8 * 8)
        else:
            self.mlp = _Mlp(dim, 4 * dim)
        self.ls2 = _LayerScale(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class DinoV2(FeatureExtractor):
    """DINOv2 ViT/14 returning normalized patch tokens of chosen blocks as a feature map.

    Parameters sit at the top level under the official names (``cls_token``, ``blocks.0...``),
    so ``state_dict()`` is an official checkpoint; the normalization buffers are not saved.
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        heads: int,
        *,
        swiglu: bool = False,
        num_registers: int = 0,
        layers: tuple[int, ...] = DINOV2_LAYERS,
    ) -> None:
        """Build the architecture; ``layers`` are block indices whose tokens are returned."""
        super().__init__()
        layers = tuple(layers)
        if not layers or any(not -depth <= i < depth for i in layers):
            raise ConfigError(
                f'DINOv2 layers must be a non-empty tuple of block indices in '
                f'[{-depth}, {depth - 1}], got {layers}'
            )
        self.layers = layers
        self._layer_ids = tuple(i % depth for i in layers)
        self.dim = dim
        self.num_registers = num_registers
        self.out_dim = dim * len(layers)
        self.stride = PATCH
        self.size_multiple = PATCH

        self.register_buffer('mean', torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer('std', torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + _POS_GRID**2, dim))
        self.register_tokens = (
            nn.Parameter(torch.zeros(1, num_registers, dim)) if num_registers else None
        )
        self.mask_token = nn.Parameter(torch.zeros(1, dim))  # Unused here; kept for strict loads.
        self.patch_embed = _PatchEmbed(dim)
        self.blocks = nn.ModuleList(_Block(dim, heads, swiglu) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)

        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        if self.register_tokens is not None:
            nn.init.normal_(self.register_tokens, std=1e-6)

    def _pos_embed(self, gh: int, gw: int) -> torch.Tensor:
        pos, grid = self.pos_embed, _POS_GRID
        if (gh, gw) == (grid, grid):
            return pos
        patch = pos[:, 1:].reshape(1, grid, grid, -1).permute(0, 3, 1, 2).float()
        # The release samples with scale (g + 0.1) / 37 rather than size=g; same grid size,
        # slightly different sample points, and trained weights expect these.
        scale = ((gh + 0.1) / grid, (gw + 0.1) / grid)
        patch = F.interpolate(patch, scale_factor=scale, mode='bicubic', align_corners=False)
        patch = patch.permute(0, 2, 3, 1).reshape(1, gh * gw, -1).to(pos.dtype)
        return torch.cat((pos[:, :1], patch), dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Map ``(B, 3, H, W)`` RGB in [0, 1] to ``(B, out_dim, H / 14, W / 14)`` features."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ConfigError(f'DINOv2 expects a (B, 3, H, W) batch, got {tuple(images.shape)}')
        b = images.shape[0]
        # Python ints (constants under ONNX tracing) so the interpolation sizes stay static.
        h, w = int(images.shape[2]), int(images.shape[3])
        if h % PATCH or w % PATCH:
            raise ConfigError(
                f'DINOv2 input height and width must be multiples of {PATCH}, got {h}x{w}'
            )
        gh, gw = h // PATCH, w // PATCH
        x = self.patch_embed((images - self.mean) / self.std)
        x = torch.cat((self.cls_token.expand(b, -1, -1), x), dim=1)
        x = x + self._pos_embed(gh, gw).to(x.dtype)
        if self.register_tokens is not None:
            regs = self.register_tokens.expand(b, -1, -1)
            x = torch.cat((x[:, :1], regs, x[:, 1:]), dim=1)
        skip = 1 + self.num_registers
        taken: dict[int, torch.Tensor] = {}
        for i, block in enumerate(self.blocks[: max(self._layer_ids) + 1]):
            x = block(x)
            if i in self._layer_ids:
                taken[i] = self.norm(x[:, skip:])
        feats = torch.cat([taken[i] for i in self._layer_ids], dim=-1)
        return feats.transpose(1, 2).reshape(b, self.out_dim, gh, gw)


def _new_model(name: str, layers: tuple[int, ...] = DINOV2_LAYERS) -> DinoV2:
    if name not in DINOV2_NAMES:
        raise ConfigError(
            f'unknown DINOv2 model {name!r}; choose one of {", ".join(DINOV2_NAMES)}'
        )
    spec = _SPECS[name.removesuffix('_reg')]
    return DinoV2(
        spec.dim,
        spec.depth,
        spec.heads,
        swiglu=spec.swiglu,
        num_registers=_NUM_REGISTERS if name.endswith('_reg') else 0,
        layers=layers,
    )


# ---- checking weight files -----------------------------------------------------------------


def _guess_name(state: dict[str, torch.Tensor]) -> str | None:
    cls = state.get('cls_token')
    if cls is None:
        return None
    for name, spec in _SPECS.items():
        if cls.shape[-1] == spec.dim:
            return name + ('_reg' if 'register_tokens' in state else '')
    return None


def _listed(keys: list[str], limit: int = 3) -> str:
    more = f' (+{len(keys) - limit} more)' if len(keys) > limit else ''
    return ', '.join(keys[:limit]) + more


def _check_fit(state: dict[str, torch.Tensor], model: DinoV2, name: str, source: str) -> None:
    """Raise one readable line instead of torch's multi-line load_state_dict report."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f'{k} {tuple(v.shape)} vs {expected[k]}'
        for k, v in state.items()
        if k in expected and tuple(v.shape) != expected[k]
    ]
    if not (missing or unexpected or wrong):
        return
    problems = []
    if wrong:
        problems.append(f'wrong shape (file vs model): {_listed(wrong)}')
    if missing:
        problems.append(f'missing: {_listed(missing)}')
    if unexpected:
        problems.append(f'unexpected: {_listed(unexpected)}')
    guess = _guess_name(state)
    hint = f'; file looks like {guess}' if guess and guess != name else ''
    raise ModelFileError(f'{source}: weights do not fit {name}: {"; ".join(problems)}{hint}')


# ---- public API ------------------------------------------------------------------------------


def build_dinov2(
    name: str,
    weights: str | os.PathLike | None = None,
    layers: tuple[int, ...] = DINOV2_LAYERS,
) -> FeatureExtractor:
    """Build a frozen DINOv2 extractor, random-initialized or from a local checkpoint.

    Args:
        name: One of ``DINOV2_NAMES``.
        weights: Official ``*_pretrain.pth`` or HF ``model.safetensors`` (file or directory);
            the format is detected from the file content. ``None`` keeps a random init.
        layers: Block indices (negatives count from the end) whose normalized patch tokens are
            concatenated along channels.

    Raises:
        ConfigError: Unknown name or invalid layers.
        ModelFileError: Missing, unreadable or non-matching weight file.
    """
    if weights is None:
        return _new_model(name, layers).freeze()
    path = Path(weights).expanduser()
    return dinov2_from_state(name, read_state_dict(path), layers, str(path))


def dinov2_from_state(
    name: str,
    state: dict[str, torch.Tensor],
    layers: tuple[int, ...] = DINOV2_LAYERS,
    source: str = 'state dict',
) -> DinoV2:
    """A frozen ``name`` holding ``state`` (official or HF names); errors name ``source``."""
    with torch.device('meta'):  # Skip a wasted random init; the state supplies every tensor.
        model = _new_model(name, layers)
    state = official_names(state, source)
    _check_fit(state, model, name, source)
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    model.mean = torch.tensor(_MEAN).view(1, 3, 1, 1)
    model.std = torch.tensor(_STD).view(1, 3, 1, 1)
    return model.freeze()


def save_official(model: DinoV2, path: str | os.PathLike) -> None:
    """Write the weights as an official-release state dict (tensors only), atomically."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_atomic(path, buffer.getvalue())


def save_hf_safetensors(model: DinoV2, path: str | os.PathLike) -> None:
    """Write the weights under Hugging Face ``Dinov2Model`` names, atomically.

    An existing directory as ``path`` gets ``model.safetensors`` inside it.
    """
    from safetensors.torch import save

    path = Path(path)
    if path.is_dir():
        path = path / HF_FILE
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    hf = {k: v.contiguous().clone() for k, v in to_hf(state).items()}
    write_atomic(path, save(hf, metadata={'format': 'pt'}))
