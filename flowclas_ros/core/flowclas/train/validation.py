# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Validation images: the AP that picks the kept epoch, and the normal images calibrated on.

With a labelled split (``val_dir``) its images and masks are used; without one, held-out
training images get pseudo-outliers pasted once, with a fixed seed, so every epoch is scored
on the same images.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from flowclas_ros.core.config import Calibration, ModelConfig
from flowclas_ros.core.data.images import list_split, read_mask, read_rgb
from flowclas_ros.core.data.outliers import PseudoOutliers
from flowclas_ros.core.errors import DataError
from flowclas_ros.core.flowclas.model import FlowClasModel
from flowclas_ros.core.flowclas.scoring import fit_calibration, upsample
from flowclas_ros.core.flowclas.train.batching import as_float, by_size, clean_features, sized
from flowclas_ros.core.flowclas.train.outliers import grid_labels
from flowclas_ros.core.metrics import exact_pixel_metrics

# Pasted frames ``threshold_on: outlines`` fits its cut on, at least.
OUTLINE_FRAMES = 60


class Validation:
    """Fixed validation images and pixel labels, scored each epoch for checkpoint choice.

    Their features are computed at the first epoch and kept: the backbone is frozen.
    """

    def __init__(
        self,
        images: list[torch.Tensor],
        labels: list[torch.Tensor],
        normal: list[torch.Tensor],
        paster: PseudoOutliers | None = None,
    ) -> None:
        self.images = images
        self.labels = labels
        self.normal = normal  # clean normal images for calibration
        self.paster = paster  # what pasted the labels; None for a labelled split
        self.features: list[torch.Tensor] = []

    def outline_frames(self, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Images and labels with anomalies to fit ``threshold_on: outlines`` on.

        A labelled split's own; else at least ``OUTLINE_FRAMES`` pasted copies of the held-out
        images, since a cut fitted on the few that one paste each gives is noisy.
        """
        if self.paster is None:
            pairs = zip(self.images, self.labels, strict=True)
            return [(x, y) for x, y in pairs if (y == 1).any()]
        gen = torch.Generator().manual_seed(seed)
        out = []
        for _ in range(math.ceil(OUTLINE_FRAMES / len(self.normal))):
            out += [_pasted(self.paster, image, gen, 1.0) for image in self.normal]
        return out

    def ap(self, model: FlowClasModel, device: torch.device) -> float:
        """Pixel AP of the model's patch scores against the patch labels."""
        if not self.features:
            self.features = clean_features(model, self.images, device)
        scores: list[torch.Tensor] = [torch.empty(0)] * len(self.features)
        with torch.no_grad():
            for group in by_size(list(range(len(self.features))), self.features, 8):
                feats = torch.stack([self.features[i] for i in group]).to(device).float()
                for k, s in zip(group, model.patch_maps(feats)[0], strict=True):
                    scores[k] = s.cpu()
        grids = [
            grid_labels(y[None], tuple(s.shape))[0]
            for s, y in zip(scores, self.labels, strict=True)
        ]
        flat = torch.cat([s.flatten() for s in scores]).numpy()
        return float(
            exact_pixel_metrics(flat, torch.cat([g.flatten() for g in grids]).numpy())['ap']
        )


def _pasted(
    paster: PseudoOutliers,
    image: torch.Tensor,
    gen: torch.Generator,
    probability: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A uint8 image ``(3, H, W)`` with pseudo-outliers pasted, and its labels ``(H, W)``."""
    mixed, label = paster.paste(as_float(image[None], torch.device('cpu')), gen, probability)
    return (mixed[0] * 255).round().byte(), label[0]


def build_validation(
    config: ModelConfig,
    held_out: list[torch.Tensor],
    val_dir: str | Path | None,
    paster: PseudoOutliers,
    multiple: int,
) -> Validation:
    """The labelled split in ``val_dir``, else ``held_out`` with pseudo-outliers pasted."""
    if val_dir is None:
        if not held_out:
            raise DataError('no images left for validation; add images or pass --val')
        gen = torch.Generator().manual_seed(config.train.seed + 1)
        pairs = [_pasted(paster, image, gen) for image in held_out]
        images, labels = [x for x, _ in pairs], [y for _, y in pairs]
        return Validation(images, labels, held_out, paster)
    images, labels = [], []
    for item in list_split(val_dir):
        if item.mask is None:
            raise DataError(f'validation split {val_dir} needs masks/ for checkpoint selection')
        rgb = read_rgb(item.image)
        image = sized(rgb, config, multiple)
        mask = torch.from_numpy(read_mask(item.mask, rgb.shape[:2]))[None, None].float()
        labels.append(F.interpolate(mask, size=image.shape[-2:], mode='nearest')[0, 0].byte())
        images.append(image)
    normal = [x for x, y in zip(images, labels, strict=True) if not (y == 1).any()]
    return Validation(images, labels, normal or images)


def calibration(model: FlowClasModel, val: Validation, device: torch.device) -> Calibration:
    """The score scale and mask-rule tables, fitted on clean held-out normal images.

    With ``train.threshold_on: outlines`` the validation images with anomalies are scored too.
    """
    model.train_flows(False)
    scores, norms = [], []
    with torch.no_grad():
        for image in val.normal:  # one by one: a cascade's scores and norms differ in grid
            s, n = model.maps(as_float(image[None], device))
            scores.append(s[0].cpu())
            norms.append(n[0].cpu())
        outlines = []
        if model.config.train.threshold_on == 'outlines':
            outlines = [
                (upsample(model.maps(as_float(image[None], device))[0], y.shape)[0].cpu(), y)
                for image, y in val.outline_frames(model.config.train.seed + 2)
            ]
    if not all(torch.isfinite(s).all() for s in [*scores, *norms, *(s for s, _ in outlines)]):
        raise FloatingPointError('non-finite scores on validation images after training')
    return fit_calibration(
        [s.numpy() for s in scores],
        [n.numpy() for n in norms],
        [(s.numpy(), y.numpy()) for s, y in outlines],
        model.config.train.mask_peak_fraction,
    )
