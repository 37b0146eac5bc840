# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Refinement between scoring and calibration: a fine feature level, and segments of the image.

A coarse (stride-32) map ranks well and says roughly where; a stride-8 density says which
pixels, but ranks poorly alone (at that scale ordinary texture is often unusual). The cascade
keeps the coarse z-score everywhere and adds the fine level's positive z only where the coarse
one exceeds a gate, so masks follow the defect while the ranking elsewhere is untouched.
Region consistency instead borrows the outline from a segmentation of the frame (superpixels
here, or any segmenter's labels).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from flowclas_ros.core.backbones import build_backbone
from flowclas_ros.core.config import (
    REFINE_MODES,
    SEGMENTS,
    FineConfig,
    LevelStats,
    ModelConfig,
)
from flowclas_ros.core.errors import ConfigError, InputError
from flowclas_ros.core.flowclas.flow import Flow
from flowclas_ros.core.flowclas.scoring import smooth, smoothing_radius, upsample
from flowclas_ros.core.geometry import check_registered

# Standard-normal 99th percentile: LevelStats put each level's normal p99 there.
_Z99 = 2.326


class MemoryBank(nn.Module):
    """Fine cells scored by the distance to the nearest of a bank of training cells.

    Each cell is first averaged with its 3 x 3 neighbours, so a score reads a small patch rather
    than one activation (Magnetic-Tile tune half, the nearest-neighbour map alone: AP 0.109 ->
    0.177). The zero padding is kept on purpose: it sets the frame's border cells apart, so they
    are compared with the training frames' borders (the cascade's AP 0.346 -> 0.360 there).
    """

    POOL = 3
    # Bank rows compared at once: bounds the distance matrix to (cells x CHUNK).
    CHUNK = 8192

    def __init__(self, channels: int, size: int) -> None:
        super().__init__()
        self.register_buffer('bank', torch.zeros(size, channels))

    def embed(self, feats: torch.Tensor) -> torch.Tensor:
        """``(B, C, h, w)`` -> each image's pooled cells ``(B, h * w, C)``."""
        pooled = F.avg_pool2d(feats, self.POOL, 1, self.POOL // 2)
        return pooled.permute(0, 2, 3, 1).flatten(1, 2)

    def fill(self, cells: torch.Tensor, generator: torch.Generator) -> None:
        """Keep ``len(self.bank)`` of ``cells`` drawn at random (all of them when fewer)."""
        if len(cells) > len(self.bank):
            cells = cells[torch.randperm(len(cells), generator=generator)[: len(self.bank)]]
        self.bank = cells.float().to(self.bank.device)

    def forward(self, feats: torch.Tensor, where: torch.Tensor | None = None) -> torch.Tensor:
        """Nearest-neighbour distance per cell ``(B, h, w)``, in float32 whatever the autocast.

        ``where`` ``(B, h, w)`` bool: only those cells are searched (the rest read 0), which is
        most of the cost saved when few cells need a fine score. |q - b|^2 = |q|^2 + |b|^2 -
        2 q.b loses the distance to cancellation in half precision.
        """
        b, _, h, w = feats.shape
        with torch.autocast(feats.device.type, enabled=False):
            cells = self.embed(feats.float()).flatten(0, 1)
            q = cells
            if where is not None:
                picked = where.flatten().nonzero()[:, 0]
                q = cells.index_select(0, picked)
            bank = self.bank.float()
            best = None
            for start in range(0, len(bank), self.CHUNK):
                rows = bank[start : start + self.CHUNK]
                d = (rows * rows).sum(1) - 2 * q @ rows.T
                m = d.min(1).values
                best = m if best is None else torch.minimum(best, m)
            dist = (best + (q * q).sum(1)).clamp(min=0).sqrt()
            if where is not None:
                dist = cells.new_zeros(len(cells)).scatter(0, picked, dist)
        return dist.reshape(b, h, w)


class FineLevel(nn.Module):
    """A frozen encoder at a fine stride and the density fitted to its features."""

    def __init__(self, config: FineConfig) -> None:
        super().__init__()
        b = config.backbone
        self.backbone = build_backbone(b.name, b.weights, b.layers)
        channels = self.backbone.out_dim
        f = config.flow
        self.density: nn.Module = (
            MemoryBank(channels, config.bank_size)
            if config.density == 'knn'
            else Flow(channels, f.steps, f.hidden_ratio, f.clamp, f.seed)
        )
        self.config = config

    def features(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.backbone(images)

    def scores(self, feats: torch.Tensor, where: torch.Tensor | None = None) -> torch.Tensor:
        """Raw scores ``(B, h, w)`` (distance, or NLL per dimension), smoothed.

        ``where`` (bool, ``(B, h, w)``): the cells whose score will be used. A bank then searches
        only those and the neighbours their smoothing reads; other cells are not meaningful.
        """
        if isinstance(self.density, MemoryBank):
            if where is not None:
                r = smoothing_radius(self.config.smoothing)
                where = F.max_pool2d(where[:, None].float(), 2 * r + 1, 1, r)[:, 0] > 0
            raw = self.density(feats, where)
        else:
            log_prob, _ = self.density.log_prob(feats)
            raw = -log_prob / self.density.channels
        return smooth(raw, self.config.smoothing)


def standardize(scores: torch.Tensor, stats: LevelStats) -> torch.Tensor:
    return (scores - stats.center) / stats.width


def on_grid(coarse_z: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """``(B, h, w)`` maps resized bilinearly to the fine grid ``size`` (as they are if there)."""
    if tuple(coarse_z.shape[-2:]) == tuple(size):
        return coarse_z
    return upsample(coarse_z, size)


def cascade(
    coarse_z: torch.Tensor, fine_z: torch.Tensor, gate: float, weight: float = 1.0
) -> torch.Tensor:
    """Coarse z on the fine grid, plus ``weight * max(fine z, 0)`` where it exceeds ``gate``."""
    coarse = on_grid(coarse_z, fine_z.shape[-2:])
    return torch.where(coarse > gate, coarse + weight * fine_z.clamp(min=0), coarse)


def fit_stats(maps: Sequence[np.ndarray]) -> LevelStats:
    """Median at 0 and 99th percentile at 2.33 of the pooled normal maps."""
    pixels = np.concatenate([np.asarray(m, dtype=np.float64).ravel() for m in maps])
    center, p99 = np.quantile(pixels, [0.5, 0.99])
    return LevelStats(center=float(center), width=float(max((p99 - center) / _Z99, 1e-6)))


def choose_refine(config: ModelConfig, mode: str) -> None:
    """Override a loaded model's ``refine`` (``model`` keeps it); cascade needs a fine level."""
    if mode == 'model':
        return
    if mode not in REFINE_MODES:
        raise ConfigError(f'unknown refine {mode!r}; choose from {("model", *REFINE_MODES)}')
    if mode == 'cascade' and config.fine is None:
        raise ConfigError(
            'refine cascade needs a model trained with a fine level (flowclas-train --refine '
            'cascade)'
        )
    if mode == 'cascade' and config.grid_shifts > 1:
        raise ConfigError('refine cascade cannot be combined with grid_shifts 2')
    config.refine = mode


# Region consistency: the official FlowCLAS code's rule over SAM 2 masks, here over any
# segmentation (label 0 = no segment). Inside each segment the scores are binned (``BINS``
# between its min and max); scores outside the most populated bin become that bin's mean, so a
# region the detector half-found lights up whole and its border follows the image.
BINS = 20


def region_consistency(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``scores`` ``(H, W)`` with each labelled segment pulled to its modal bin's mean.

    ``labels`` ``(H, W)`` integers on the same device; 0 and negative labels are left alone.
    """
    if labels.shape != scores.shape:
        raise ConfigError(
            f'segments {tuple(labels.shape)} do not match scores {tuple(scores.shape)}'
        )
    flat, seg = scores.reshape(-1), labels.reshape(-1).long()
    inside = seg > 0
    everywhere = bool(inside.all())  # superpixels and most segmenters label every pixel
    if not everywhere and not bool(inside.any()):
        return scores
    values, seg = (flat, seg) if everywhere else (flat[inside], seg[inside])
    if int(seg.max()) >= seg.numel():  # sparse ids (a hash, an instance id): make them dense
        _, seg = torch.unique(seg, return_inverse=True)
    n = int(seg.max()) + 1  # ids without pixels get empty rows nobody reads
    low = torch.full((n,), float('inf'), device=flat.device).scatter_reduce(0, seg, values, 'amin')
    high = torch.full((n,), -float('inf'), device=flat.device).scatter_reduce(
        0, seg, values, 'amax'
    )
    span = (high - low).clamp(min=1e-12)
    bins = ((values - low[seg]) / span[seg] * BINS).long().clamp(max=BINS - 1)
    cell = seg * BINS + bins
    counts = torch.bincount(cell, minlength=n * BINS).view(n, BINS)
    sums = torch.zeros(n * BINS, device=flat.device, dtype=values.dtype).index_add_(
        0, cell, values
    )
    modal = counts.argmax(1)
    modal_mean = (
        sums.view(n, BINS).gather(1, modal[:, None])[:, 0] / counts.gather(1, modal[:, None])[:, 0]
    )
    refined = torch.where(bins == modal[seg], values, modal_mean[seg].to(values.dtype))
    if everywhere:
        return refined.view_as(scores)
    out = flat.clone()
    out[inside] = refined
    return out.view_as(scores)


def with_segments(scores: torch.Tensor, labels: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``region_consistency`` with labels of any size registered to the frame of ``scores``.

    Labels are scaled to the scores' size by nearest neighbour; ``InputError`` when their
    aspect ratio is not the frame's.
    """
    if isinstance(labels, np.ndarray):
        labels = torch.from_numpy(labels.astype(np.int64, copy=False))
    labels = labels.to(scores.device)
    if labels.ndim != 2 or labels.numel() == 0:
        raise InputError('segments_size', f'segment labels must be 2-D, got {tuple(labels.shape)}')
    check_registered(tuple(labels.shape), tuple(scores.shape), 'segments')
    if labels.shape != scores.shape:
        labels = F.interpolate(labels[None, None].float(), scores.shape, mode='nearest')[0, 0]
    return region_consistency(scores, labels.long())


def frame_superpixels(rgb: np.ndarray, device: torch.device | str = 'cpu') -> torch.Tensor:
    """SLIC superpixels of a uint8 RGB frame ``(H, W, 3)``, computed on ``device``."""
    frame = torch.from_numpy(np.ascontiguousarray(rgb)).to(device)
    return superpixels(frame.permute(2, 0, 1).float() / 255)


def segmenter(
    source: str, device: torch.device | str = 'cpu'
) -> Callable[[np.ndarray], torch.Tensor] | None:
    """The segmenter for ``source`` in ``SEGMENTS`` (None for ``none``)."""
    if source not in SEGMENTS:
        raise ConfigError(f'unknown segments {source!r}; choose from {SEGMENTS}')
    return None if source == 'none' else partial(frame_superpixels, device=device)


def _lab(rgb: torch.Tensor) -> torch.Tensor:
    """Gamma-encoded RGB ``(3, H, W)`` in [0, 1] -> CIE L*a*b* (D65), a perceptual space."""
    linear = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    m = torch.tensor(
        [[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]],
        dtype=rgb.dtype,
        device=rgb.device,
    )
    xyz = torch.einsum('ij,jhw->ihw', m, linear)
    xyz = (
        xyz / torch.tensor([0.9505, 1.0, 1.089], dtype=rgb.dtype, device=rgb.device)[:, None, None]
    )
    f = torch.where(xyz > 0.008856, xyz.clamp(min=1e-12) ** (1 / 3), 7.787 * xyz + 16 / 116)
    return torch.stack([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def superpixels(
    rgb: torch.Tensor,
    segments: int = 300,
    compactness: float = 10.0,
    iterations: int = 5,
    max_side: int = 320,
) -> torch.Tensor:
    """SLIC superpixels of ``(3, H, W)`` RGB in [0, 1]: labels ``(H, W)`` from 1.

    Needs no weights. Run on the frame shrunk to ``max_side`` and upsampled by nearest
    neighbour (their borders are then up to one shrunk pixel off); each pixel chooses among the
    centres of its own and the eight neighbouring grid cells, with no connectivity pass.
    """
    height, width = rgb.shape[-2:]
    scale = min(1.0, max_side / max(height, width))
    h, w = max(1, round(height * scale)), max(1, round(width * scale))
    small = F.interpolate(rgb[None].float(), (h, w), mode='area')[0] if scale < 1 else rgb.float()
    step = max(1.0, (h * w / segments) ** 0.5)
    gh, gw = max(1, round(h / step)), max(1, round(w / step))
    ys = torch.arange(h, device=rgb.device, dtype=torch.float32)
    xs = torch.arange(w, device=rgb.device, dtype=torch.float32)
    yy, xx = torch.meshgrid(ys, xs, indexing='ij')
    weight = compactness / step
    feats = torch.cat([_lab(small), (yy * weight)[None], (xx * weight)[None]]).reshape(5, -1)
    cy = (yy.long() * gh // h).reshape(-1)
    cx = (xx.long() * gw // w).reshape(-1)
    cell = cy * gw + cx
    n = gh * gw
    centres = _cell_means(feats, cell, n, torch.zeros(5, n, device=rgb.device))
    candidates = [
        (cy + dy).clamp(0, gh - 1) * gw + (cx + dx).clamp(0, gw - 1)
        for dy in (-1, 0, 1)
        for dx in (-1, 0, 1)
    ]
    for _ in range(iterations):
        best = cell.clone()
        nearest = torch.full(cell.shape, float('inf'), device=rgb.device)
        for candidate in candidates:
            distance = (feats - centres[:, candidate]).square().sum(0)
            closer = distance < nearest
            nearest = torch.where(closer, distance, nearest)
            best = torch.where(closer, candidate, best)
        cell = best
        centres = _cell_means(feats, cell, n, centres)
    labels = (cell + 1).view(1, 1, h, w).float()
    return F.interpolate(labels, (height, width), mode='nearest')[0, 0].long()


def _cell_means(
    feats: torch.Tensor, cell: torch.Tensor, n: int, old: torch.Tensor
) -> torch.Tensor:
    """Mean feature ``(5, n)`` of the pixels in each cell; an empty cell keeps ``old``."""
    sums = torch.zeros(feats.shape[0], n, device=feats.device).index_add_(1, cell, feats)
    counts = torch.bincount(cell, minlength=n)[None]
    return torch.where(counts > 0, sums / counts.clamp(min=1), old)
