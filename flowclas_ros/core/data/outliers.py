# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Pseudo-outliers for Outlier Exposure: foreign content pasted into inlier images.

Training needs no labels: the pasted pixels are the anomalies. Objects come from an outlier
folder (cut out by their masks, or by a random blob when there are none); users without
outlier data get procedural ones: random blob or scratch shapes filled with a foreign
texture, a flat colour or stripes.

The scene itself re-lit is not a procedural fill: inside a large re-lit region, patches look
like the normal lighting variation between images, so labelling them outliers contradicts the
likelihood term. On Magnetic-Tile it kept the contrastive loss from converging and lowered
pixel AUROC on the real defects (0.775 with it, 0.790 without).
"""

from __future__ import annotations

from collections.abc import Sequence
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from flowclas_ros.core.config import PASTE_SCALES
from flowclas_ros.core.data.images import list_images, read_rgb, to_batch
from flowclas_ros.core.errors import ConfigError

# ``anywhere``: uniform over the frame; ``ground``: half of the objects stand on the lower part
# of the frame, smaller towards the horizon, as obstacles on a road or floor do.
PLACEMENTS = ('anywhere', 'ground')
# Under ``ground``: an object's bottom edge lies between these fractions of the frame height,
# and its size shrinks linearly from full at the bottom to zero at HORIZON.
GROUND_BOTTOM = (0.55, 1.0)
HORIZON = 0.4


def _rand(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.rand(shape, generator=gen)


def _uniform(gen: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=gen))


def _choice(gen: torch.Generator, n: int) -> int:
    return int(torch.randint(n, (), generator=gen))


def smooth_noise(gen: torch.Generator, channels: int, h: int, w: int, cells: int) -> torch.Tensor:
    """Value noise: a ``cells``-coarse random grid upsampled bicubically to ``(C, h, w)``."""
    coarse = _rand(gen, 1, channels, cells, cells)
    return F.interpolate(coarse, size=(h, w), mode='bicubic', align_corners=False)[0]


def blob_mask(gen: torch.Generator, h: int, w: int) -> torch.Tensor:
    """A random smooth blob filling part of an ``(h, w)`` box, as float {0, 1}."""
    field = smooth_noise(gen, 1, h, w, cells=int(torch.randint(2, 6, (), generator=gen)))[0]
    yy = torch.linspace(-1, 1, h)[:, None]
    xx = torch.linspace(-1, 1, w)[None, :]
    falloff = 1 - (yy.square() + xx.square()).clamp(max=1)
    return (field * falloff > 0.25 * float(falloff.max())).float()


def scratch_mask(gen: torch.Generator, h: int, w: int) -> torch.Tensor:
    """A thin random-walk curve (cracks, cables, scratches) across an ``(h, w)`` box."""
    mask = torch.zeros(h, w)
    y0, x0 = _uniform(gen, h / 4, 3 * h / 4), _uniform(gen, w / 4, 3 * w / 4)
    heading = _uniform(gen, 0, 2 * math.pi)
    radius = _choice(gen, 3)
    for direction in (0.0, math.pi):  # walk both ways from the middle
        y, x, angle = y0, x0, heading + direction
        for _ in range(2 * max(h, w)):
            angle += _uniform(gen, -0.3, 0.3)
            y, x = y + math.sin(angle), x + math.cos(angle)
            if not (0 <= y < h and 0 <= x < w):
                break
            iy, ix = int(y), int(x)
            mask[max(iy - radius, 0) : iy + radius + 1, max(ix - radius, 0) : ix + radius + 1] = 1
    return mask


class PseudoOutliers:
    """Pastes pseudo-outliers into a batch of inlier images.

    Args:
        outlier_dir: optional folder of outlier images; a sibling or child ``masks/`` folder
            with ``<stem>.png`` object masks is used when present.
        size: model input size ``(H, W)``; outlier images are loaded at this size.
        max_objects: up to this many objects per image (at least one).
        probability: chance that an image gets any; the others stay clean, so the likelihood
            term also sees whole scenes, not only the parts far from pasted objects.
        scales: object sizes to draw from, as fractions of the image side.
        placement: where objects go, one of ``PLACEMENTS``.
    """

    def __init__(
        self,
        outlier_dir: str | Path | None,
        size: tuple[int, int],
        max_objects: int = 2,
        probability: float = 1.0,
        scales: Sequence[float] = PASTE_SCALES,
        placement: str = 'anywhere',
    ) -> None:
        if placement not in PLACEMENTS:
            raise ConfigError(f'unknown paste placement {placement!r}; choose from {PLACEMENTS}')
        if not scales or not all(0 < s <= 1 for s in scales):
            raise ConfigError(f'paste scales must be fractions in (0, 1], got {list(scales)}')
        self.size = tuple(size)
        self.max_objects = max_objects
        self.probability = probability
        self.scales = tuple(scales)
        self.placement = placement
        self.objects: torch.Tensor | None = None
        self.object_masks: torch.Tensor | None = None
        if outlier_dir is not None:
            self._load(Path(outlier_dir))

    def _load(self, folder: Path) -> None:
        image_dir = folder / 'images' if (folder / 'images').is_dir() else folder
        files = list_images(image_dir)
        self.objects = to_batch([read_rgb(p) for p in files], self.size)
        mask_dir = image_dir.parent / 'masks' if image_dir != folder else folder / 'masks'
        if mask_dir.is_dir():
            masks = []
            for p in files:
                m = mask_dir / f'{p.stem}.png'
                if m.is_file():
                    obj = torch.from_numpy(read_rgb(m)[..., 0] > 0).float()[None, None]
                    masks.append(F.interpolate(obj, size=self.size, mode='nearest')[0, 0])
                else:
                    masks.append(torch.ones(self.size))
            self.object_masks = torch.stack(masks)

    def paste(
        self, images: torch.Tensor, gen: torch.Generator, probability: float | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return mixed images ``(B, 3, H, W)`` and labels ``(B, H, W)`` (0 inlier, 1 pasted).

        ``probability`` overrides the chance that an image gets objects.
        """
        p = self.probability if probability is None else probability
        mixed = images.clone()
        labels = torch.zeros(images.shape[0], *images.shape[-2:], dtype=torch.uint8)
        for b in range(images.shape[0]):
            if float(torch.rand((), generator=gen)) >= p:
                continue
            for _ in range(1 + _choice(gen, self.max_objects)):
                self._paste_one(mixed[b], labels[b], gen)
        return mixed, labels

    def _paste_one(self, image: torch.Tensor, label: torch.Tensor, gen: torch.Generator) -> None:
        H, W = image.shape[-2:]
        scale = self.scales[_choice(gen, len(self.scales))]
        aspect = math.exp(_uniform(gen, -0.7, 0.7))
        grounded = self.placement == 'ground' and _choice(gen, 2) == 0
        if grounded:
            bottom = _uniform(gen, *GROUND_BOTTOM)
            scale *= (bottom - HORIZON) / (1 - HORIZON)
        h = max(4, min(H, int(scale * H * math.sqrt(aspect))))
        w = max(4, min(W, int(scale * W / math.sqrt(aspect))))
        x0 = _choice(gen, W - w + 1)
        y0 = max(0, min(H, int(bottom * H)) - h) if grounded else _choice(gen, H - h + 1)
        region = image[:, y0 : y0 + h, x0 : x0 + w]
        if self.objects is not None and _choice(gen, 2) == 0:
            fill, mask = self._object_patch(gen, h, w)
        else:
            mask = scratch_mask(gen, h, w) if _choice(gen, 4) == 0 else blob_mask(gen, h, w)
            fill = self._procedural_fill(gen, region)
        if mask.sum() < 1:
            return
        # A slightly feathered edge, so the network cannot key on a hard seam alone.
        alpha = F.avg_pool2d(mask[None, None], 3, 1, 1)[0, 0] if min(h, w) > 8 else mask
        region.mul_(1 - alpha).add_(fill * alpha)
        label[y0 : y0 + h, x0 : x0 + w][mask > 0.5] = 1

    def _object_patch(
        self, gen: torch.Generator, h: int, w: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        i = _choice(gen, len(self.objects))
        obj = F.interpolate(self.objects[i : i + 1], size=(h, w), mode='bilinear')[0]
        if self.object_masks is not None:
            m = self.object_masks[i : i + 1, None]
            mask = (F.interpolate(m, size=(h, w), mode='nearest')[0, 0] > 0.5).float()
        else:
            mask = blob_mask(gen, h, w)
        return obj, mask

    def _procedural_fill(self, gen: torch.Generator, region: torch.Tensor) -> torch.Tensor:
        c, h, w = region.shape
        kind = _choice(gen, 3)
        if kind == 0:  # flat foreign colour
            return _rand(gen, c, 1, 1).expand(c, h, w)
        if kind == 1:  # smooth foreign texture
            cells = int(torch.randint(2, 24, (), generator=gen))
            return smooth_noise(gen, c, h, w, cells).clamp(0, 1)
        # stripes: man-made high-frequency structure
        period = _uniform(gen, 3, 16)
        angle = _uniform(gen, 0, math.pi)
        yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing='ij')
        wave = torch.sin((xx * math.cos(angle) + yy * math.sin(angle)) * 2 * math.pi / period)
        colours = _rand(gen, 2, c, 1, 1)
        return torch.where(wave > 0, colours[0], colours[1])
