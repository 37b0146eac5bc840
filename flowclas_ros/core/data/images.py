# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Reading image folders and evaluation splits, with one-line errors for bad data."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
import torch
import torch.nn.functional as F

from flowclas_ros.core.config import IGNORE_LABEL
from flowclas_ros.core.errors import DataError

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')
SIZE_POLICIES = ('fixed', 'keep_aspect', 'native')


def list_images(folder: str | Path) -> list[Path]:
    """Sorted image files directly in ``folder``; an error if there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f'image folder not found: {folder}')
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f'no images ({", ".join(IMAGE_SUFFIXES)}) in {folder}')
    return files


def read_rgb(path: str | Path) -> np.ndarray:
    """Image file -> ``(H, W, 3)`` uint8 RGB (grey and palette images are expanded)."""
    try:
        with Image.open(path) as image:
            return np.array(image.convert('RGB'))
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise DataError(f'cannot read image {path}: {exc}') from exc


def read_mask(path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """Mask PNG -> ``(H, W)`` uint8: 0 normal, 1 anomaly, 255 ignore; size must equal ``shape``."""
    try:
        with Image.open(path) as image:
            mask = np.asarray(image)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise DataError(f'cannot read mask {path}: {exc}') from exc
    if mask.ndim == 3:
        mask = mask[..., 0]
    if mask.shape != tuple(shape):
        raise DataError(
            f'mask {path} is {mask.shape[1]}x{mask.shape[0]} but its image is '
            f'{shape[1]}x{shape[0]}'
        )
    bad = np.setdiff1d(np.unique(mask), (0, 1, IGNORE_LABEL))
    if bad.size:
        raise DataError(
            f'mask {path} has values {bad[:5].tolist()}; expected 0, 1 or {IGNORE_LABEL}'
        )
    return mask.astype(np.uint8)


def image_class(path: str | Path) -> str:
    """Defect class from the file name prefix (``crack_001.png`` -> ``crack``)."""
    return Path(path).stem.split('_')[0]


@dataclass
class SplitItem:
    image: Path
    mask: Path | None


def list_split(folder: str | Path) -> list[SplitItem]:
    """An evaluation split: ``images/<stem>.<ext>`` with optional ``masks/<stem>.png``.

    A missing mask means "no ground truth for this image" only when the split has no masks
    folder at all; inside a split with masks every image needs one.
    """
    folder = Path(folder)
    images = list_images(folder / 'images')
    mask_dir = folder / 'masks'
    if not mask_dir.is_dir():
        return [SplitItem(p, None) for p in images]
    items = []
    for p in images:
        mask = mask_dir / f'{p.stem}.png'
        if not mask.is_file():
            raise DataError(f'no mask {mask} for image {p}')
        items.append(SplitItem(p, mask))
    return items


def network_size(
    height: int, width: int, input_size: Sequence[int], policy: str, multiple: int
) -> tuple[int, int]:
    """The size a ``height x width`` frame is resized to before the backbone.

    ``fixed``: ``input_size`` whatever the frame (squashes other aspect ratios).
    ``keep_aspect``: the frame's aspect ratio at about ``input_size``'s pixel count.
    ``native``: the frame's own pixel scale, shrunk (aspect kept) only when it has more pixels
    than ``input_size``; a defect of ten pixels stays ten pixels in every frame, which is what
    the flow learned normal texture at. Sides are rounded to ``multiple``.
    """
    if policy == 'fixed':
        return int(input_size[0]), int(input_size[1])
    budget = input_size[0] * input_size[1] / (height * width)
    if policy == 'keep_aspect':
        scale = budget**0.5
    elif policy == 'native':
        scale = min(1.0, budget**0.5)
    else:
        raise ValueError(f'unknown size policy {policy!r}; choose from {SIZE_POLICIES}')
    m = multiple
    return max(m, round(height * scale / m) * m), max(m, round(width * scale / m) * m)


def to_batch(
    images: list[np.ndarray], size: tuple[int, int], device: str | torch.device = 'cpu'
) -> torch.Tensor:
    """uint8 ``(H, W, 3)`` arrays -> ``(B, 3, h, w)`` float in [0, 1] at the model's input size.

    Antialiased bilinear resizing in torch, the same in training, evaluation and the node. The
    uint8 frame moves to ``device`` first: a quarter of the bytes, and the resize runs there.
    """
    out = []
    for image in images:
        # Frames straight from a message buffer are read-only; torch wants to own writable memory.
        image = np.ascontiguousarray(image) if image.flags.writeable else image.copy()
        x = torch.from_numpy(image).to(device).permute(2, 0, 1)[None].float() / 255
        if tuple(x.shape[-2:]) != tuple(size):
            x = F.interpolate(x, size=tuple(size), mode='bilinear', antialias=True)
        out.append(x.clamp_(0, 1))
    return torch.cat(out)
