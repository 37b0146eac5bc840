# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Small real models and images for tests that need a model directory (no ROS)."""

from __future__ import annotations

from pathlib import Path
import shutil

import numpy as np
from PIL import Image as PILImage
import torch

from flowclas_ros.core.config import BackboneConfig, ModelConfig
from flowclas_ros.core.data.images import to_batch
from flowclas_ros.core.data.synthetic import make_surface_dataset
from flowclas_ros.core.flowclas.model import build_model, save_model
from flowclas_ros.core.flowclas.scoring import fit_calibration


def smooth_image(h=40, w=56, seed=0):
    """Smooth colour blobs with a little noise: realistic enough for JPEG."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    big = np.asarray(PILImage.fromarray(small).resize((w, h), PILImage.BILINEAR), np.int16)
    return np.clip(big + rng.integers(-8, 9, big.shape), 0, 255).astype(np.uint8)


def make_model(path, size, standardize=False):
    """A random-init model with its calibration fitted on its own scores, so they spread.

    ``standardize`` also fits the base Gaussian to the latents of those images, as training
    would: their latent norms then look chi-square, and the NFA rule marks only what differs.
    """
    # EfficientNet-Lite0 alone: its stride-16 grid gives the small test frames enough patches.
    config = ModelConfig(input_size=[size, size], backbone=BackboneConfig())
    model = build_model(config).eval()
    batch = to_batch([smooth_image(size, size, seed=s) for s in range(4)], (size, size))
    with torch.no_grad():
        if standardize:
            _, z = model.flow.log_prob(model.features(batch))
            model.flow.base.mean.copy_(z.mean((0, 2, 3), keepdim=True))
            model.flow.base.log_std.copy_(z.std((0, 2, 3), keepdim=True).log())
        raw, norms = model.patch_maps(model.features(batch))
    # Masks kept whole: tests of thresholds, regions and points read every pixel above the cut.
    model.config.calibration = fit_calibration(raw.numpy(), norms.numpy(), peak_fraction=0.0)
    save_model(model, path)
    return path


def labelled_split(root, per_class=4):
    """A labelled split (``images/``, ``masks/``): synthetic surfaces with scratches, stains
    and none, in two sizes, half PNG and half JPEG, so bags carry both codecs."""
    root = Path(root)
    split = root / 'split'
    for sub in ('images', 'masks'):
        (split / sub).mkdir(parents=True)
    for seed, (tag, size) in enumerate((('a', (64, 80)), ('b', (48, 96)))):
        source = make_surface_dataset(root / tag, 0, per_class, size, seed) / 'test'
        for image in sorted((source / 'images').iterdir()):
            stem = image.stem.replace('_', f'_{tag}', 1)
            if tag == 'a':
                shutil.copy(image, split / 'images' / image.name.replace(image.stem, stem))
            else:
                PILImage.open(image).save(split / 'images' / f'{stem}.jpg', quality=90)
            shutil.copy(source / 'masks' / f'{image.stem}.png', split / 'masks' / f'{stem}.png')
    return split
