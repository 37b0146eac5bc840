# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Images of mixed sizes held as uint8 on the host, batched by size; the learning-rate shape."""

from __future__ import annotations

from collections.abc import Callable
import math

import torch


def as_float(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    return images.to(device).float() / 255


def by_size(indices: list[int], images: list[torch.Tensor], limit: int = 16) -> list[list[int]]:
    """``indices`` grouped into batches of equal image size, at most ``limit`` each."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i in indices:
        groups.setdefault(tuple(images[i].shape), []).append(i)
    return [g[k : k + limit] for g in groups.values() for k in range(0, len(g), limit)]


@torch.no_grad()
def each_image(
    fn: Callable[[torch.Tensor], torch.Tensor], images: list[torch.Tensor], device: torch.device
) -> list[torch.Tensor]:
    """``fn`` on every image, batched by size, each result back on the host in input order."""
    out: list[torch.Tensor] = [torch.empty(0)] * len(images)
    for group in by_size(list(range(len(images))), images, 8):
        result = fn(as_float(torch.stack([images[i] for i in group]), device))
        for k, i in enumerate(group):
            out[i] = result[k].cpu()
    return out


def cosine_schedule(step: int, total: int, warmup: int) -> float:
    """Linear warm-up over ``warmup`` steps, then a cosine down to zero at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
