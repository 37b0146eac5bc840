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
from dataclasses import asdict, dataclass, replace
from pathlib import Path
import time

import numpy as np
from PIL import Image
import torch

from flowclas_ros.core.config import IGNORE_LABEL, Calibration
from flowclas_ros.core.data.frames import Frame, FrameSource
from flowclas_ros.core.engines import Engine
from flowclas_ros.core.errors import DataError
from flowclas_ros.core.flowclas.model import FlowClasModel
from flowclas_ros.core.flowclas.refine import with_segments
from flowclas_ros.core.flowclas.scoring import calibrate, uncalibrate, upsample
from flowclas_ros.core.inference import Detector, Segmenter
from flowclas_ros.core.mask_choice import Budget, Quality, candidate_rules, choose
from flowclas_ros.core.masks import (
    MaskRule,
    anomaly_mask,
    missing,
    require,
    rule_name,
)
from flowclas_ros.core.metrics import AuproMetric, PixelMetrics
from flowclas_ros.core.visualize import heatmap, overlay

BINS = 20000
IMAGE_BINS = 1000  # per-image AP, for ranking images in reports

# Each frame with its raw full-size scores and its patch-grid latent norms (None if unknown).
Scored = Callable[[], Iterator[tuple[Frame, np.ndarray, np.ndarray | None]]]


@dataclass
class Evaluation:
    """Metrics (JSON-ready) and a way to walk the frames with their raw full-size scores again.

    ``masks`` gives a frame's predicted mask (bool) from its calibrated scores and its norms,
    by the rule the evaluation was asked for.
    """

    metrics: dict
    scored: Scored
    calibration: Calibration
    masks: Callable[[np.ndarray, np.ndarray | None], np.ndarray]


def evaluate(
    model: FlowClasModel,
    frames: FrameSource,
    save_maps: str | Path | None = None,
    on_scores: Callable[[Frame, torch.Tensor, np.ndarray], None] | None = None,
    rule: MaskRule | None = None,
    engine: Engine | None = None,
    segments: Segmenter | None = None,
    choose_mask: Budget | None = None,
) -> Evaluation:
    """Score every frame with ``model`` as the node does, then compute metrics.

    ``on_scores(frame, patch_scores, latent_norms)`` sees each frame's engine outputs (the
    norms on the host) as they are computed; the bag tool writes its output bag from them.
    ``rule`` is the mask rule whose masks the panels show; every rule's quality is measured.
    ``engine`` runs the model (default: torch fp32), so the ONNX Runtime and TensorRT paths a
    robot deploys are scored as well. ``segments`` refines each frame's full-size scores by
    region consistency over its labels (``Detector.detect``), as the node would. With
    ``choose_mask`` every rule is measured over a grid of settings too, and
    ``metrics['mask_choice']`` holds the one ``mask_choice.choose`` keeps within that budget.
    """
    start = time.time()
    detector = Detector(model, engine=engine)  # the node's preprocessing, on the model's device
    maps: list[tuple[torch.Tensor, np.ndarray]] = []
    lo, hi = np.inf, -np.inf
    with torch.no_grad():
        for frame in frames():
            s, n = detector.engine(detector.preprocess(frame.rgb))
            if not torch.isfinite(s).all():
                raise DataError(f'non-finite scores for {frame.name}')
            n = detector.host_norms(n)
            if on_scores is not None:
                on_scores(frame, s, n)
            s = s[0].cpu()
            lo, hi = min(lo, float(s.min())), max(hi, float(s.max()))
            maps.append((s, n))
    if not maps:
        raise DataError('no frames to evaluate')
    seconds_model = time.time() - start

    def scored() -> Iterator[tuple[Frame, np.ndarray, np.ndarray]]:
        for (s, n), frame in zip(maps, frames(), strict=True):
            full = upsample(s[None], frame.shape)[0]
            labels = segments(frame.rgb) if segments is not None else None
            if labels is not None:
                full = with_segments(full, labels)
            yield frame, full.numpy(), n

    calibration = model.config.calibration
    masks = _Masks(rule or MaskRule(), calibration, model.channels, choose_mask)
    metrics = _metrics(scored, lo, hi, calibration, masks, save_maps)
    metrics['seconds'] = time.time() - start
    metrics['seconds_per_image_model'] = seconds_model / len(maps)
    return Evaluation(metrics, scored, calibration, masks.chosen)


def evaluate_recorded(
    frames: FrameSource,
    calibration: Calibration,
    save_maps: str | Path | None = None,
    rule: MaskRule | None = None,
    choose_mask: Budget | None = None,
) -> Evaluation:
    """Metrics of calibrated scores a node published (``frame.scores``), e.g. from a bag.

    Latent norms are not recorded, so the ``nfa`` mask rules are not measured (nor chosen).
    """
    start = time.time()

    def scored() -> Iterator[tuple[Frame, np.ndarray, None]]:
        for frame in frames():
            yield frame, uncalibrate(frame.scores, calibration), None

    lo, hi = np.inf, -np.inf
    for _, raw, _ in scored():
        lo, hi = min(lo, float(raw.min())), max(hi, float(raw.max()))
    if lo > hi:
        raise DataError('no recorded scores to evaluate')
    masks = _Masks(rule or MaskRule(), calibration, None, choose_mask)
    metrics = _metrics(scored, lo, hi, calibration, masks, save_maps)
    metrics['seconds'] = time.time() - start
    return Evaluation(metrics, scored, calibration, masks.chosen)


class _Masks:
    """The quality of every mask rule that can run, with the chosen rule's settings.

    ``fpr`` needs the model's table and ``nfa`` latent norms. Quality: mean IoU over frames
    with anomalies, false alarms over defect-free frames. With a ``budget`` the candidates of
    ``mask_choice`` are measured as well, to choose one within it.
    """

    def __init__(
        self,
        rule: MaskRule,
        calibration: Calibration,
        channels: int | None,
        budget: Budget | None = None,
    ) -> None:
        require(rule, calibration, bool(channels))
        self.rule, self.calibration, self.channels = rule, calibration, channels or 0
        self.budget = budget

        def runs(r: MaskRule) -> bool:
            return missing(r, calibration, bool(channels)) is None

        named = [
            replace(rule, mode='fixed'),
            replace(rule, mode='fpr'),
            replace(rule, mode='nfa', nfa_null='chi2'),
            replace(rule, mode='nfa', nfa_null='fitted'),
            replace(rule, mode='fixed_nfa', nfa_null='chi2'),
            replace(rule, mode='fixed_nfa', nfa_null='fitted'),
        ]
        self.named = {rule_name(r): r for r in named if runs(r)}
        candidates = candidate_rules(rule.min_area) if budget is not None else []
        self.candidates = [r for r in candidates if runs(r)]
        measured = dict.fromkeys([*self.named.values(), *self.candidates])
        self.iou: dict[MaskRule, list[float]] = {r: [] for r in measured}
        self.alarms: dict[MaskRule, list[float]] = {r: [] for r in measured}

    def chosen(self, calibrated: np.ndarray, norms: np.ndarray | None) -> np.ndarray:
        return self._mask(calibrated, norms, self.rule)

    def _mask(
        self, calibrated: np.ndarray, norms: np.ndarray | None, rule: MaskRule
    ) -> np.ndarray:
        return anomaly_mask(calibrated, norms, rule, self.calibration, self.channels) > 0

    def update(
        self, calibrated: np.ndarray, norms: np.ndarray | None, labels: np.ndarray
    ) -> np.ndarray:
        """Measure every rule on one labelled frame; returns the chosen rule's mask."""
        valid, truth = labels != IGNORE_LABEL, labels == 1
        anomalous = truth.any()
        for rule in self.iou:  # one mask at a time: hundreds of candidates
            mask = self._mask(calibrated, norms, rule)
            pred = mask & valid
            if anomalous:
                self.iou[rule].append((pred & truth).sum() / (pred | truth).sum())
            else:
                self.alarms[rule].append(pred.sum() / max(valid.sum(), 1))
            if rule == self.rule:
                chosen = mask
        return chosen

    def quality(self, rule: MaskRule) -> Quality:
        iou, alarms = self.iou[rule], self.alarms[rule]
        marked = sum(a > 0 for a in alarms)
        return Quality(float(np.mean(iou)) if iou else None, int(marked), len(alarms))

    def summary(self) -> dict:
        out: dict = {'rule': asdict(self.rule)}
        for name, rule in self.named.items():
            q, alarms = self.quality(rule), self.alarms[rule]
            out[name] = {
                'miou': q.miou,
                'false_alarm_images': q.marked / q.free if q.free else None,
                'false_alarm_pixels': float(np.mean(alarms)) if alarms else None,
            }
        return out

    def choice(self) -> dict:
        """The candidate ``choose`` keeps, and every candidate's quality on these frames."""
        budget = self.budget
        quality = {r: self.quality(r) for r in self.candidates}
        rule = choose(quality, budget)
        q = quality[rule]
        return {
            'rule': asdict(rule),
            'miou': q.miou,
            'false_alarm_images': q.marked / q.free,
            'marked': q.marked,
            'free': q.free,
            'marked_bound': q.marked_bound(budget.confidence),
            'budget': asdict(budget),
            'candidates': [
                {'rule': asdict(r), 'miou': c.miou, 'marked': c.marked} for r, c in quality.items()
            ],
        }


def _metrics(
    scored: Scored,
    lo: float,
    hi: float,
    calibration: Calibration,
    masks: _Masks,
    save_maps: str | Path | None,
) -> dict:
    """Stream every labelled frame into pooled, per-class and per-image accumulators.

    ``per_class``: for each file-name prefix with anomalies, AP and AUROC over its images plus
    the defect-free ones (prefixes whose masks are all empty, such as ``free``). ``masks``:
    each mask rule's mean IoU and false alarms, and the mean IoU at the best single threshold
    (``oracle``, chosen on the data itself: an upper bound for any fixed threshold).
    """
    hi = hi if hi > lo else lo + 1.0
    pooled = PixelMetrics(lo, hi, BINS)
    aupro = AuproMetric(lo, hi, BINS)
    by_class: dict[str, PixelMetrics] = {}
    counts: dict[str, int] = {}
    has_anomaly: dict[str, bool] = {}
    per_image = []
    oracle_iou = np.zeros(IMAGE_BINS)
    n_anomalous = 0
    unlabelled = 0
    maps_dir = Path(save_maps) if save_maps is not None else None
    if maps_dir is not None:
        maps_dir.mkdir(parents=True, exist_ok=True)
    for frame, full, norms in scored():
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
        anomalous = bool((mask == 1).any())
        has_anomaly[frame.cls] = has_anomaly.get(frame.cls, False) or anomalous
        cal = calibrate(torch.from_numpy(full), calibration).numpy()
        predicted = masks.update(cal, norms, mask)
        image = PixelMetrics(lo, hi, IMAGE_BINS)
        image.update(full, mask)
        per_image.append(_image_summary(frame, image, cal, predicted, mask))
        if anomalous:
            edges, iou = image.iou_curve()
            oracle_iou += iou
            n_anomalous += 1
        if maps_dir is not None:
            Image.fromarray(panel(frame, cal, predicted)).save(maps_dir / f'{frame.name}.png')
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
    mask_quality = masks.summary()
    choice = {'mask_choice': masks.choice()} if masks.budget is not None else {}
    if n_anomalous:
        best = int(np.argmax(oracle_iou))
        threshold = calibrate(torch.tensor([edges[best]], dtype=torch.float64), calibration)
        mask_quality['oracle'] = {
            'miou': float(oracle_iou[best] / n_anomalous),
            'threshold': float(threshold[0]),
        }
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
        'masks': mask_quality,
        **choice,
        'per_image': per_image,
        'histogram': pooled.histogram(),
        'curves': pooled.curves(),
    }


def _image_summary(
    frame: Frame, image: PixelMetrics, cal: np.ndarray, predicted: np.ndarray, mask: np.ndarray
) -> dict:
    """Per-image AP (None without anomalous pixels) and the predicted mask's false alarms."""
    ap = image.compute()['ap']
    normal = mask == 0
    return {
        'name': frame.name,
        'class': frame.cls,
        'stamp_ns': frame.stamp_ns,
        'ap': None if np.isnan(ap) else ap,
        'max_score': float(cal.max()),
        'false_alarm_fraction': float(predicted[normal].mean()) if normal.any() else 0.0,
    }


def panel(frame: Frame, calibrated: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Input | heatmap overlay | predicted mask | ground truth."""
    shape = calibrated.shape
    rgb = frame.rgb if frame.rgb is not None else np.full((*shape, 3), 128, np.uint8)
    pred = np.repeat((predicted * 255).astype(np.uint8)[..., None], 3, axis=2)
    labels = frame.mask if frame.mask is not None else np.zeros(shape, np.uint8)
    truth = np.where(labels == 1, 255, np.where(labels == IGNORE_LABEL, 96, 0)).astype(np.uint8)
    truth = np.repeat(truth[..., None], 3, axis=2)
    return np.concatenate([rgb, overlay(rgb, heatmap(calibrated)), pred, truth], axis=1)
