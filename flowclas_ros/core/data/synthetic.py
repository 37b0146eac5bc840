# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""A small procedural surface-inspection data set, so the demo and tests need no downloads.

Normal images are brushed-metal-like textures (streaks, grain, uneven lighting); test images
add scratches and stains with pixel masks, in the split layout the evaluator reads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
import torch

from flowclas_ros.core.data.outliers import blob_mask, scratch_mask, smooth_noise


def surface(gen: torch.Generator, h: int, w: int) -> torch.Tensor:
    """One normal grey surface ``(h, w)`` in [0, 1]."""
    streaks = torch.rand(1, w, generator=gen).expand(h, w)
    streaks = torch.nn.functional.avg_pool1d(streaks[None], 3, 1, 1)[0]
    light = smooth_noise(gen, 1, h, w, cells=3)[0]
    grain = torch.rand(h, w, generator=gen)
    base = 0.25 + 0.25 * float(torch.rand((), generator=gen))
    return (base + 0.12 * streaks + 0.15 * light + 0.06 * grain).clamp(0, 1)


def defect(gen: torch.Generator, image: torch.Tensor, kind: str) -> torch.Tensor:
    """Add a ``scratch`` or ``stain`` in place; return its mask ``(h, w)`` as uint8 0/1."""
    h, w = image.shape
    bh, bw = h // 2, w // 2
    y0 = int(torch.randint(h - bh + 1, (), generator=gen))
    x0 = int(torch.randint(w - bw + 1, (), generator=gen))
    shape = scratch_mask(gen, bh, bw) if kind == 'scratch' else blob_mask(gen, bh, bw)
    region = image[y0 : y0 + bh, x0 : x0 + bw]
    if kind == 'scratch':
        region[shape > 0] = 0.05
    else:
        region[shape > 0] = (region[shape > 0] * 1.3 + 0.08).clamp(0, 1)
    mask = torch.zeros(h, w, dtype=torch.uint8)
    mask[y0 : y0 + bh, x0 : x0 + bw] = (shape > 0).to(torch.uint8)
    return mask


def _save(image: torch.Tensor, path: Path) -> None:
    Image.fromarray((image.numpy() * 255).round().astype(np.uint8)).save(path)


def make_surface_dataset(
    root: str | Path,
    n_train: int = 48,
    n_test_per_class: int = 6,
    size: tuple[int, int] = (192, 192),
    seed: int = 0,
) -> Path:
    """Write ``root/train/images`` (normal) and ``root/test/{images,masks}``; return ``root``."""
    root = Path(root)
    gen = torch.Generator().manual_seed(seed)
    h, w = size
    (root / 'train' / 'images').mkdir(parents=True, exist_ok=True)
    for d in ('images', 'masks'):
        (root / 'test' / d).mkdir(parents=True, exist_ok=True)
    for i in range(n_train):
        _save(surface(gen, h, w), root / 'train' / 'images' / f'free_{i:03d}.png')
    for kind in ('scratch', 'stain', 'free'):
        for i in range(n_test_per_class):
            image = surface(gen, h, w)
            if kind == 'free':
                mask = torch.zeros(h, w, dtype=torch.uint8)
            else:
                mask = defect(gen, image, kind)
            _save(image, root / 'test' / 'images' / f'{kind}_{i:03d}.png')
            Image.fromarray(mask.numpy()).save(root / 'test' / 'masks' / f'{kind}_{i:03d}.png')
    return root
