# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""What a training run reads once: images, cached features, pasted variants, validation.

Images are kept at their network sizes. The backbone is frozen, so clean images' features
are computed here once; only images pasted during the epochs go through it again (none with
``train.pasted_variants``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
import warnings

import torch

from flowclas_ros.core.data.images import list_images, read_rgb
from flowclas_ros.core.data.outliers import PseudoOutliers
from flowclas_ros.core.errors import DataError
from flowclas_ros.core.flowclas.model import FlowClasModel
from flowclas_ros.core.flowclas.train.batching import (
    clean_features,
    progress_line,
    sized,
)
from flowclas_ros.core.flowclas.train.outliers import Variants, model_paster, pasted_variants
from flowclas_ros.core.flowclas.train.validation import Validation, build_validation

MIN_IMAGES = 20  # fewer trains, with a warning


@dataclass
class TrainData:
    """Training images at their network sizes, their cached features, and validation.

    ``pasted[v][i]``: features and patch labels of image ``i`` with pasted variant ``v``.
    """

    model: FlowClasModel
    train_images: list[torch.Tensor]
    cache: list[torch.Tensor]
    paster: PseudoOutliers
    val: Validation
    pasted: Variants


def evenly(files: list[Path], limit: int) -> list[Path]:
    """At most ``limit`` (0: all) of ``files``, evenly spaced."""
    if limit <= 0 or len(files) <= limit:
        return files
    return [files[i * len(files) // limit] for i in range(limit)]


def load_data(
    model: FlowClasModel,
    images_dir: str | Path,
    outlier_dir: str | Path | None,
    val_dir: str | Path | None,
    progress: bool,
) -> TrainData:
    """Read and size the images, hold some out (without ``val_dir``), cache clean features.

    Called by ``train`` itself: the few-images warning names the caller of ``train``.
    """
    config, tc = model.config, model.config.train
    multiple = model.backbone.size_multiple
    files = evenly(list_images(images_dir), tc.max_images)
    order = torch.randperm(len(files), generator=torch.Generator().manual_seed(tc.seed)).tolist()
    n_val = 0 if val_dir is not None else max(1, int(round(len(files) * tc.val_fraction)))
    if len(files) - n_val < 1:
        raise DataError(f'{images_dir} has {len(files)} image(s); training needs at least 2')
    if len(files) < MIN_IMAGES:
        warnings.warn(
            f'only {len(files)} training images in {images_dir}: the model will know little '
            f'of what is normal (use {MIN_IMAGES} or more)',
            stacklevel=3,
        )
    held_out = set(order[:n_val])
    images = [
        sized(read_rgb(path), config, multiple, training=i not in held_out)
        for i, path in enumerate(files)
    ]
    train_images = [images[i] for i in order[n_val:]]
    paster = model_paster(config, outlier_dir)
    val = build_validation(config, [images[i] for i in order[:n_val]], val_dir, paster, multiple)
    progress_line('caching backbone features', progress)
    cache = clean_features(model, train_images, model.device)
    pasted = pasted_variants(model, train_images, paster)
    return TrainData(model, train_images, cache, paster, val, pasted)
