# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Evaluate on frames (a split folder or a bag): pooled pixel metrics, per class, AUPRO.

Two passes keep memory flat: first every frame's patch-level map (small) and the global
score range; then each map is upsampled to its frame's size and streamed into histograms
spanning that range (bilinear upsampling never leaves it). Recorded full-size scores are read
twice instead of kept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
import time

import numpy as np
from PIL import Image
import torch

from flowclas_ros.core.config import Calibration
from flowclas_ros.core.data.frames import Frame, FrameSource
from flowclas_ros.core.errors import DataError
from flowclas_ros.core.inference import Detector
from flowclas_ros.core.metrics import AuproMetric, PixelMetrics
from flowclas_ros.core.model import FlowClasModel, upsample
from flowclas_ros.core.scoring import calibrate, uncalibrate
from flowclas_ros.core.visualize import heatmap, overlay

BINS = 20000
IMAGE_BINS = 1000  # per-image AP, for ranking images in reports

Scored = Callable[[], Iterator[tuple[Frame, np.ndarray]]]


@dataclass
class Evaluation:
    """Metrics (JSON-ready) and a way to walk the frames with their raw full-size scores again."""

    metrics: dict
    scored: Scored
    calibration: Calibration


def evaluate(
    model: FlowClasModel,
    frames: FrameSource,
    save_maps: str | Path | None = None,
    on_scores: Callable[[Frame, torch.Tensor], None] | None = None,
) -> Evaluation:
    """Score every frame with ``model`` as the node does, then compute metrics.

    ``on_scores(frame, patch_scores)`` sees each frame's raw patch map as it is computed (the
    bag tool writes its output bag from it).
    """
    start = time.time()
    detector = Detector(model)  # the node's preprocessing and engine, on the model's device
    maps: list[torch.Tensor] = []
    lo, hi = np.inf, -np.inf
    with torch.no_grad():
        for frame in frames():
            s = detector.engine(detector.preprocess(frame.rgb))
            if not torch.isfinite(s).all():
                raise DataError(f'non-finite scores for {frame.name}')
            if on_scores is not None:
                on_scores(frame, s)
            s = s[0].cpu()
            lo, hi = min(lo, float(s.min())), max(hi, float(s.max()))
            maps.append(s)
    if not maps:
        raise DataError('no frames to evaluate')
    seconds_model = time.time() - start

    def scored() -> Iterator[tuple[Frame, np.ndarray]]:
        for s, frame in zip(maps, frames(), strict=True):
            yield frame, upsample(s[None], frame.shape)[0].numpy()

    calibration = model.config.calibration
    metrics = _metrics(scored, lo, hi, calibration, save_maps)
    metrics['seconds'] = time.time() - start
    metrics['seconds_per_image_model'] = seconds_model / len(maps)
    return Evaluation(metrics, scored, calibration)


def evaluate_recorded(
    frames: FrameSource, calibration: Calibration, save_maps: str | Path | None = None
) -> Evaluation:
    """Metrics of calibrated scores a node published (``frame.scores``), e.g. from a bag."""
    start = time.time()

    def scored() -> Iterator[tuple[Frame, np.ndarray]]:
        for frame in frames():
            yield frame, uncalibrate(frame.scores, calibration)

    lo, hi = np.inf, -np.inf
    for _, raw in scored():
        lo, hi = min(lo, float(raw.min())), max(hi, float(raw.max()))
    if lo > hi:
        raise DataError('no recorded scores to evaluate')
    metrics = _metrics(scored, lo, hi, calibration, save_maps)
    metrics['seconds'] = time.time() - start
    return Evaluation(metrics, scored, calibration)


def _metrics(
    scored: Scored,
    lo: float,
    hi: float,
    calibration: Calibration,
    save_maps: str | Path | None,
) -> dict:
    """Stream every labelled frame into pooled, per-class and per-image accumulators.

    ``per_class``: for each file-name prefix with anomalies, AP and AUROC over its images plus
    the defect-free ones (prefixes whose masks are all empty, such as ``free``).
    """
    hi = hi if hi > lo else lo + 1.0
    pooled = PixelMetrics(lo, hi, BINS)
    aupro = AuproMetric(lo, hi, BINS)
    by_class: dict[str, PixelMetrics] = {}
    counts: dict[str, int] = {}
    has_anomaly: dict[str, bool] = {}
    per_image = []
    unlabelled = 0
    maps_dir = Path(save_maps) if save_maps is not None else None
    if maps_dir is not None:
        maps_dir.mkdir(parents=True, exist_ok=True)
    for frame, full in scored():
        if frame.mask is None:
            unlabelled += 1
            continue
        mask = frame.mask
        if mask.shape != full.shape:
            raise DataError(f'{frame.name}: mask is {mask.shape}, scores are {full.shape}')
        pooled.update(full, mask)
        aupro.update(full, mask)
        by_class.setdefault(frame.cls, PixelMetrics(lo, hi, BINS)).update(full, mask)
        counts[frame.cls] = counts.get(frame.cls, 0) + 1
        has_anomaly[frame.cls] = has_anomaly.get(frame.cls, False) or bool((mask == 1).any())
        cal = calibrate(torch.from_numpy(full), calibration).numpy()
        per_image.append(_image_summary(frame, full, cal, mask, lo, hi))
        if maps_dir is not None:
            Image.fromarray(panel(frame, cal)).save(maps_dir / f'{frame.name}.png')
    if not per_image:
        raise DataError('no frame has ground truth; nothing to compute metrics on')

    normal_classes = [c for c, anomalous in has_anomaly.items() if not anomalous]
    per_class = {}
    for cls, anomalous in sorted(has_anomaly.items()):
        if not anomalous:
            continue
        acc = PixelMetrics(lo, hi, BINS)
        for c in [cls, *normal_classes]:
            acc.merge(by_class[c])
        m = acc.compute()
        per_class[cls] = {'ap': m['ap'], 'auroc': m['auroc'], 'n_images': counts[cls]}
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
        'n_images': len(per_image),
        'n_unlabelled': unlabelled,
        'n_pos_pixels': result['n_pos'],
        'n_neg_pixels': result['n_neg'],
        'per_image': per_image,
        'histogram': pooled.histogram(),
        'curves': pooled.curves(),
    }


def _image_summary(
    frame: Frame, raw: np.ndarray, cal: np.ndarray, mask: np.ndarray, lo: float, hi: float
) -> dict:
    """Per-image AP (None without anomalous pixels) and false alarms at calibrated 0.5."""
    image = PixelMetrics(lo, hi, IMAGE_BINS)
    image.update(raw, mask)
    ap = image.compute()['ap']
    normal = mask == 0
    return {
        'name': frame.name,
        'class': frame.cls,
        'stamp_ns': frame.stamp_ns,
        'ap': None if np.isnan(ap) else ap,
        'max_score': float(cal.max()),
        'false_alarm_fraction': float((cal[normal] >= 0.5).mean()) if normal.any() else 0.0,
    }


def panel(frame: Frame, calibrated: np.ndarray) -> np.ndarray:
    """Input | heatmap overlay | predicted mask (calibrated >= 0.5) | ground truth."""
    shape = calibrated.shape
    rgb = frame.rgb if frame.rgb is not None else np.full((*shape, 3), 128, np.uint8)
    pred = np.repeat(((calibrated >= 0.5) * 255).astype(np.uint8)[..., None], 3, axis=2)
    labels = frame.mask if frame.mask is not None else np.zeros(shape, np.uint8)
    truth = np.where(labels == 1, 255, np.where(labels == 255, 96, 0)).astype(np.uint8)
    truth = np.repeat(truth[..., None], 3, axis=2)
    return np.concatenate([rgb, overlay(rgb, heatmap(calibrated)), pred, truth], axis=1)
