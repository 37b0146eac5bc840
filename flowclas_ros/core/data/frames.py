# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Evaluation frames, whether they come from a split folder or from a bag.

Evaluation reads its source twice (scores first, then pixels against a fixed score range), so a
source is a function that starts a fresh pass, not an iterator.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flowclas_ros.core.data.images import image_class, list_split, read_mask, read_rgb
from flowclas_ros.core.errors import DataError


@dataclass
class Frame:
    """One image with its ground truth.

    ``rgb`` is None where only recorded scores exist; ``scores`` then holds the calibrated
    scores a node published. ``mask`` labels 0 normal, 1 anomaly, 255 ignore; None: unlabelled.
    Frames from bags keep their header (``stamp_ns``, ``frame_id``) and bag time.
    """

    name: str
    cls: str
    rgb: np.ndarray | None
    mask: np.ndarray | None
    stamp_ns: int | None = None
    scores: np.ndarray | None = None
    frame_id: str = ''
    log_ns: int | None = None  # when a bag recorded it

    @property
    def shape(self) -> tuple[int, int]:
        source = self.rgb if self.rgb is not None else self.scores
        return tuple(source.shape[:2])


FrameSource = Callable[[], Iterable[Frame]]


def split_frames(split_dir: str | Path) -> FrameSource:
    """Frames of a split folder (``images/``, ``masks/``), in file-name order."""
    items = list_split(split_dir)
    if any(item.mask is None for item in items):
        raise DataError(f'{split_dir} has no masks/ folder; evaluation needs ground truth')

    def frames() -> Iterable[Frame]:
        for item in items:
            rgb = read_rgb(item.image)
            mask = read_mask(item.mask, rgb.shape[:2])
            yield Frame(item.image.stem, image_class(item.image), rgb, mask)

    return frames
