# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Shared by the training modules: uint8 images of mixed sizes, their features, the schedule.

Images are held as uint8 on the host at their network sizes and batched by size; their frozen
features are computed once; the learning rate follows a warm-up and cosine; one status line
shows progress.
"""

from __future__ import annotations

from collections.abc import Callable
import math
import sys
from typing import TYPE_CHECKING

import numpy as np
import torch

from flowclas_ros.core.config import ModelConfig
from flowclas_ros.core.data.images import network_size, to_batch

if TYPE_CHECKING:
    from flowclas_ros.core.flowclas.model import FlowClasModel


def sized(
    rgb: np.ndarray, config: ModelConfig, multiple: int, training: bool = False
) -> torch.Tensor:
    """uint8 ``(3, h, w)`` at the image's network size (uint8 holds large folders in memory).

    ``training``: at the size the flow trains on (``train.input_size``, where set); validation
    and calibration images are sized as the model scores.
    """
    target = training_size(config) if training else config.input_size
    size = network_size(*rgb.shape[:2], target, config.size_policy, multiple)
    return (to_batch([rgb], size) * 255).round().byte()[0]


def training_size(config: ModelConfig) -> list[int]:
    """The size training images are scaled to: ``train.input_size``, else the model's."""
    return config.train.input_size or config.input_size


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


def clean_features(
    model: FlowClasModel, images: list[torch.Tensor], device: torch.device
) -> list[torch.Tensor]:
    """Backbone features of every image, once, in half precision on the host.

    The backbone is frozen, so only images that get pseudo-outliers pasted need it again.
    """
    return each_image(lambda x: model.features(x).half(), images, device)


def cosine_schedule(step: int, total: int, warmup: int) -> float:
    """Linear warm-up over ``warmup`` steps, then a cosine down to zero at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def progress_line(text: str, enabled: bool) -> None:
    """One self-overwriting status line, on terminals only (logs get the summary)."""
    if enabled and sys.stderr.isatty():
        sys.stderr.write('\r' + text.ljust(100) + ('' if text else '\r'))
        sys.stderr.flush()
