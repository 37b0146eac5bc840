# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Evaluate a model on a split folder: pooled pixel metrics, per-class breakdown, AUPRO.

Two passes keep memory flat: first every image's patch-level map (small) and the global
score range; then each map is upsampled to its image's size and streamed into histograms
spanning that range (bilinear upsampling never leaves it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
import time

import numpy as np
from PIL import Image
import torch

from flowclas_ros.core.data.images import image_class, list_split, read_mask, read_rgb
from flowclas_ros.core.errors import DataError
from flowclas_ros.core.inference import Detector
from flowclas_ros.core.metrics import AuproMetric, PixelMetrics
from flowclas_ros.core.model import FlowClasModel, upsample
from flowclas_ros.core.scoring import calibrate
from flowclas_ros.core.visualize import heatmap, overlay

BINS = 20000


@dataclass
class _Scored:
    name: str
    cls: str
    patch_scores: torch.Tensor  # (h, w)
    shape: tuple[int, int]


def evaluate(
    model: FlowClasModel, split_dir: str | Path, save_maps: str | Path | None = None
) -> dict:
    """Metrics of ``model`` on ``split_dir`` (``images/``, ``masks/``), as a JSON-ready dict.

    ``per_class``: for each file-name prefix with anomalies, AP and AUROC over its images plus
    the defect-free ones (prefixes whose masks are all empty, such as ``free``).
    """
    start = time.time()
    items = list_split(split_dir)
    if any(item.mask is None for item in items):
        raise DataError(f'{split_dir} has no masks/ folder; evaluation needs ground truth')
    scored: list[_Scored] = []
    lo, hi = np.inf, -np.inf
    detector = Detector(model)  # the node's preprocessing and engine, on the model's device
    with torch.no_grad():
        for item in items:
            rgb = read_rgb(item.image)
            s = detector.engine(detector.preprocess(rgb))[0].cpu()
            if not torch.isfinite(s).all():
                raise DataError(f'non-finite scores for {item.image}')
            lo, hi = min(lo, float(s.min())), max(hi, float(s.max()))
            scored.append(_Scored(item.image.stem, image_class(item.image), s, rgb.shape[:2]))
    seconds_model = time.time() - start
    hi = hi if hi > lo else lo + 1.0

    pooled = PixelMetrics(lo, hi, BINS)
    aupro = AuproMetric(lo, hi, BINS)
    by_class: dict[str, PixelMetrics] = {}
    has_anomaly: dict[str, bool] = {}
    maps_dir = Path(save_maps) if save_maps is not None else None
    if maps_dir is not None:
        maps_dir.mkdir(parents=True, exist_ok=True)
    for entry, item in zip(scored, items, strict=True):
        mask = read_mask(item.mask, entry.shape)
        full = upsample(entry.patch_scores[None], entry.shape)[0].numpy()
        pooled.update(full, mask)
        aupro.update(full, mask)
        by_class.setdefault(entry.cls, PixelMetrics(lo, hi, BINS)).update(full, mask)
        has_anomaly[entry.cls] = has_anomaly.get(entry.cls, False) or bool((mask == 1).any())
        if maps_dir is not None:
            _save_panel(maps_dir / f'{entry.name}.png', item.image, full, mask, model)

    normal_classes = [c for c, anomalous in has_anomaly.items() if not anomalous]
    per_class = {}
    for cls, anomalous in sorted(has_anomaly.items()):
        if not anomalous:
            continue
        acc = PixelMetrics(lo, hi, BINS)
        for c in [cls, *normal_classes]:
            acc.merge(by_class[c])
        m = acc.compute()
        per_class[cls] = {'ap': m['ap'], 'auroc': m['auroc'], 'n_images': _count(scored, cls)}
    result = pooled.compute()
    return {
        'ap': result['ap'],
        'auroc': result['auroc'],
        'fpr95': result['fpr95'],
        'aupro': aupro.compute(),
        'mean_per_class_auroc': float(np.mean([v['auroc'] for v in per_class.values()]))
        if per_class
        else float('nan'),
        'per_class': per_class,
        'normal_classes': normal_classes,
        'n_images': len(items),
        'n_pos_pixels': result['n_pos'],
        'n_neg_pixels': result['n_neg'],
        'seconds': time.time() - start,
        'seconds_per_image_model': seconds_model / len(items),
    }


def _count(scored: list[_Scored], cls: str) -> int:
    return sum(1 for s in scored if s.cls == cls)


def _save_panel(
    path: Path, image_path: Path, scores: np.ndarray, mask: np.ndarray, model: FlowClasModel
) -> None:
    """Input | heatmap overlay | predicted mask | ground truth, side by side."""
    rgb = read_rgb(image_path)
    cal = calibrate(torch.from_numpy(scores), model.config.calibration).numpy()
    pred = np.repeat(((cal >= 0.5) * 255).astype(np.uint8)[..., None], 3, axis=2)
    truth = np.repeat((np.where(mask == 1, 255, 0)).astype(np.uint8)[..., None], 3, axis=2)
    panel = np.concatenate([rgb, overlay(rgb, heatmap(cal)), pred, truth], axis=1)
    Image.fromarray(panel).save(path)
