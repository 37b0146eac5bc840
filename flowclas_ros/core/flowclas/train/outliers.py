# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Pseudo-outliers on the feature grid: patch labels, fixed pasted variants, per-batch draws.

Pasting happens on pixels (``data.outliers``); the flow and its losses see patches, so each
pasted image's pixel labels become patch labels here, and a batch draws which of its images
are pasted and which window of their maps it trains on.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from flowclas_ros.core.config import IGNORE_LABEL, ModelConfig
from flowclas_ros.core.data.outliers import PseudoOutliers
from flowclas_ros.core.flowclas.model import FlowClasModel
from flowclas_ros.core.flowclas.train.batching import as_float, by_size, training_size

if TYPE_CHECKING:
    from flowclas_ros.core.flowclas.train.data import TrainData

# ``pasted[v][i]`` of ``TrainData``: features (half) and patch labels of image i, variant v.
Variants = list[list[tuple[torch.Tensor, torch.Tensor]]]


def model_paster(config: ModelConfig, outlier_dir: str | Path | None = None) -> PseudoOutliers:
    """The pseudo-outliers ``config`` trains with (``outlier_dir``: photos, else procedural)."""
    tc = config.train
    return PseudoOutliers(
        outlier_dir,
        tuple(training_size(config)),
        probability=tc.paste_probability,
        scales=tc.paste_scales,
        placement=tc.paste_placement,
    )


def grid_labels(labels: torch.Tensor, size: tuple[int, int], margin: int = 0) -> torch.Tensor:
    """Pixel labels ``(B, H, W)`` -> patch labels at the feature grid.

    A patch is an outlier when at least half of it is pasted, an inlier when none of it is and
    none of it lies within ``margin`` patches of a pasted pixel, and void otherwise. Mixed
    patches would teach the flow that outliers are likely; so would their neighbours, whose
    features carry the pasted content through the backbone's receptive field.
    """
    pasted = (labels == 1).float()[:, None]
    frac = F.adaptive_avg_pool2d(pasted, size)[:, 0]
    near = F.adaptive_max_pool2d(pasted, size)
    if margin > 0:
        near = F.max_pool2d(near, 2 * margin + 1, 1, margin)
    void = F.adaptive_max_pool2d((labels == IGNORE_LABEL).float()[:, None], size)[:, 0]
    out = torch.full(frac.shape, IGNORE_LABEL, dtype=torch.uint8)
    out[near[:, 0] == 0] = 0
    out[frac >= 0.5] = 1
    out[void > 0] = IGNORE_LABEL
    return out


def pasted_variants(
    model: FlowClasModel, images: list[torch.Tensor], paster: PseudoOutliers
) -> Variants:
    """``train.pasted_variants`` pasted copies of every image: features (half) and labels."""
    tc = model.config.train
    out = []
    for v in range(tc.pasted_variants if tc.mode == 'flowclas' else 0):
        gen = torch.Generator().manual_seed(tc.seed + 3 + v)
        variant: list[tuple[torch.Tensor, torch.Tensor]] = [(torch.empty(0),) * 2] * len(images)
        for group in by_size(list(range(len(images))), images, 8):
            clean = as_float(torch.stack([images[i] for i in group]), torch.device('cpu'))
            mixed, pixel_labels = paster.paste(clean, gen, probability=1.0)
            feats = model.features(mixed.to(model.device))
            grid = grid_labels(pixel_labels, tuple(feats.shape[-2:]), tc.inlier_margin)
            for k, i in enumerate(group):
                variant[i] = (feats[k].half().cpu(), grid[k])
        out.append(variant)
    return out


def paste_from(
    data: TrainData, group: list[int], gen: torch.Generator, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features and patch labels of ``group``: each image clean or, by chance, pasted.

    Pasted features come from the fixed variants when there are any (no backbone call), else
    the backbone runs on images pasted now.
    """
    model, tc = data.model, data.model.config.train
    feats = torch.stack([data.cache[i] for i in group]).to(device).float()
    grid = torch.zeros(len(group), *feats.shape[-2:], dtype=torch.uint8)
    if tc.mode != 'flowclas':
        return feats, grid
    if data.pasted:
        for j, i in enumerate(group):
            if float(torch.rand((), generator=gen)) < tc.paste_probability:
                f, g = data.pasted[int(torch.randint(len(data.pasted), (), generator=gen))][i]
                feats[j], grid[j] = f.to(device).float(), g
        return feats, grid
    clean = as_float(torch.stack([data.train_images[i] for i in group]), torch.device('cpu'))
    mixed, pixel_labels = data.paster.paste(clean, gen)
    pasted = (pixel_labels == 1).flatten(1).any(1)
    if pasted.any():
        feats[pasted.to(device)] = model.features(mixed[pasted].to(device))
        grid = grid_labels(pixel_labels, tuple(feats.shape[-2:]), tc.inlier_margin)
    return feats, grid


def crop(
    feats: torch.Tensor, grid: torch.Tensor, side: int, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """A ``side`` x ``side`` window of each map (whole maps when ``side`` is 0 or larger).

    An image with pasted patches gets a window around one of them, so the contrastive term
    still sees its outliers.
    """
    h, w = feats.shape[-2:]
    if side <= 0 or (side >= h and side >= w):
        return feats, grid
    ch, cw = min(side, h), min(side, w)
    out_f, out_g = [], []
    for f, g in zip(feats, grid, strict=True):
        y0 = int(torch.randint(h - ch + 1, (), generator=gen))
        x0 = int(torch.randint(w - cw + 1, (), generator=gen))
        hits = (g == 1).nonzero()
        if len(hits):
            py, px = hits[int(torch.randint(len(hits), (), generator=gen))].tolist()
            y0 = min(max(y0, py - ch + 1), py, h - ch)
            x0 = min(max(x0, px - cw + 1), px, w - cw)
        out_f.append(f[:, y0 : y0 + ch, x0 : x0 + cw])
        out_g.append(g[y0 : y0 + ch, x0 : x0 + cw])
    return torch.stack(out_f), torch.stack(out_g)
