# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Binary anomaly masks from a frame's scores, by one of four rules.

``fixed``: calibrated score >= ``threshold``. ``fpr``: the thresholds that mark
``target_fpr`` of normal validation pixels, applied only in frames whose largest score is
above the threshold that flags ``target_fpr`` of normal validation frames. ``nfa``: the a
contrario regions of the latent norms with log10 NFA < ``log10_epsilon``, no tuning at all,
under the chi-square null with C degrees of freedom (``nfa_null='chi2'``, U-Flow's) or the
``scale * chi2(dof)`` fitted on normal validation patches (``'fitted'``). ``fixed_nfa``: the
``fixed`` rule's regions that meet an ``nfa`` region, so the a contrario test says which
regions are real and the (refined) scores say their shape.

Any rule's regions can then be trimmed to their cores (``peak_fraction``): a region above a
threshold is a blob around its anomaly, since the detector's map is smooth at its cell size, so
each region keeps only what rises a given fraction of the way from its lowest to its highest
score (0.5: half its height above its base, the width at half maximum).
"""

from __future__ import annotations

from dataclasses import dataclass
import math

import numpy as np
from scipy import ndimage
import torch

from flowclas_ros.core.config import Calibration
from flowclas_ros.core.errors import ConfigError
from flowclas_ros.core.flowclas.scoring import calibrate, uncalibrate, upsample
from flowclas_ros.core.geometry import EIGHT_CONNECTED
from flowclas_ros.core.thresholds.fpr import TARGET_FPR_TEXT, fpr_thresholds, valid_target_fpr
from flowclas_ros.core.thresholds.nfa import nfa_mask

MASK_MODES = ('fixed', 'fpr', 'nfa', 'fixed_nfa')
# Rules that only compare each pixel's score with a threshold (no region analysis).
THRESHOLD_MODES = ('fixed', 'fpr')
# Rules that read the latent norms (the a contrario test).
NFA_MODES = ('nfa', 'fixed_nfa')
NFA_NULLS = ('chi2', 'fitted')
# Regions are labelled (to trim them, or to match them with NFA regions) on a copy of the
# frame at most this many pixels a side.
REGION_SIDE = 320
# A ``mask_peak_fraction`` setting (node parameter, tool option) that defers to the model's.
MODEL_PEAK_FRACTION = -1.0


@dataclass(frozen=True)
class MaskRule:
    """Which rule cuts the mask, its setting, its trim and the smallest region kept (pixels)."""

    mode: str = 'fixed'
    threshold: float = 0.5
    target_fpr: float = 0.01
    log10_epsilon: float = 0.0
    min_area: int = 0
    nfa_null: str = 'chi2'
    peak_fraction: float | None = None  # None: the model's (``Calibration.peak_fraction``)

    def __post_init__(self) -> None:
        if self.mode not in MASK_MODES:
            raise ConfigError(f'mask_mode must be one of {MASK_MODES}, got {self.mode!r}')
        if not 0 <= self.threshold <= 1:
            raise ConfigError(f'threshold must be in [0, 1], got {self.threshold}')
        if not valid_target_fpr(self.target_fpr):
            raise ConfigError(f'target_fpr must be in {TARGET_FPR_TEXT}, got {self.target_fpr}')
        if self.nfa_null not in NFA_NULLS:
            raise ConfigError(f'nfa_null must be one of {NFA_NULLS}, got {self.nfa_null!r}')
        if self.peak_fraction is not None and not 0 <= self.peak_fraction < 1:
            raise ConfigError(f'mask_peak_fraction must be in [0, 1), got {self.peak_fraction}')
        if self.min_area < 0:
            raise ConfigError(f'mask_min_area must be >= 0, got {self.min_area}')

    @property
    def reads_norms(self) -> bool:
        return self.mode in NFA_MODES

    @classmethod
    def from_settings(cls, s: object) -> MaskRule:
        """From the names the node parameters and the tools' options share (``mask_mode``...).

        A negative ``mask_peak_fraction`` means the model's.
        """
        return cls(
            s.mask_mode,
            s.threshold,
            s.target_fpr,
            s.nfa_log10_epsilon,
            s.mask_min_area,
            s.nfa_null,
            None if s.mask_peak_fraction < 0 else s.mask_peak_fraction,
        )

    def settings(self) -> dict[str, str | float | int]:
        """The inverse of ``from_settings``: the node parameters that give this rule."""
        return {
            'mask_mode': self.mode,
            'threshold': self.threshold,
            'target_fpr': self.target_fpr,
            'nfa_log10_epsilon': self.log10_epsilon,
            'nfa_null': self.nfa_null,
            'mask_peak_fraction': (
                MODEL_PEAK_FRACTION if self.peak_fraction is None else self.peak_fraction
            ),
            'mask_min_area': self.min_area,
        }


def rule_name(rule: MaskRule) -> str:
    """How reports label a rule: its mode, with ``_fitted`` for an NFA rule's fitted null."""
    fitted = rule.reads_norms and rule.nfa_null == 'fitted'
    return f'{rule.mode}_fitted' if fitted else rule.mode


def missing(rule: MaskRule, calibration: Calibration, has_norms: bool) -> str | None:
    """Why ``rule`` cannot run with this calibration (and norms or not), or None if it can."""
    if rule.mode == 'fpr' and calibration.fpr is None:
        return (
            'the model has no false-positive-rate table (trained before it existed); '
            'run flowclas-calibrate on normal images, or use mask_mode fixed or nfa'
        )
    if rule.reads_norms and not has_norms:
        return f'mask mode {rule.mode} needs the latent norms, and recorded scores have none'
    if rule.reads_norms and rule.nfa_null == 'fitted' and calibration.latent_null is None:
        return (
            'the model has no fitted latent null (trained before it existed); '
            'run flowclas-calibrate on normal images, or use nfa_null chi2'
        )
    return None


def require(rule: MaskRule, calibration: Calibration, has_norms: bool) -> None:
    """Raise ``ConfigError`` with the reason when ``rule`` cannot run (see ``missing``)."""
    reason = missing(rule, calibration, has_norms)
    if reason is not None:
        raise ConfigError(reason)


def calibrated_fpr_thresholds(calibration: Calibration, target_fpr: float) -> tuple[float, float]:
    """(pixel, frame) thresholds of the ``fpr`` rule on the calibrated 0..1 scale."""
    raw = torch.tensor(fpr_thresholds(calibration.fpr, target_fpr), dtype=torch.float64)
    pixel, frame = calibrate(raw, calibration).tolist()
    return pixel, frame


def anomaly_mask(
    scores: np.ndarray,
    norms: np.ndarray | None,
    rule: MaskRule,
    calibration: Calibration,
    channels: int,
) -> np.ndarray:
    """uint8 mask (0 or 255) the size of ``scores``.

    Args:
        scores: calibrated scores (H, W).
        norms: latent norms on the patch grid (h, w); only the ``nfa`` rules read them.
        rule: the rule and its settings.
        calibration: the model's calibration (``fpr`` reads its table).
        channels: latent dimensions, the chi-square degrees of freedom of the ``chi2`` null.
    """
    require(rule, calibration, norms is not None)
    if rule.mode in THRESHOLD_MODES:
        hits = threshold_hits(scores, rule, calibration)
    elif rule.mode == 'nfa':
        hits = resize_mask(_nfa_regions(norms, rule, calibration, channels), scores.shape)
    else:  # fixed_nfa; on most frames of a normal scene nothing passes, and NFA is not searched
        hits = scores >= rule.threshold
        if hits.any():
            hits = regions_meeting(hits, _nfa_regions(norms, rule, calibration, channels))
    hits = trim_to_peaks(hits, scores, peak_fraction(rule, calibration), calibration)
    return drop_small(hits, rule.min_area).astype(np.uint8) * 255


def _nfa_regions(
    norms: np.ndarray, rule: MaskRule, calibration: Calibration, channels: int
) -> np.ndarray:
    """The NFA rule's regions on the patch grid, under the rule's null."""
    dof = channels
    if rule.nfa_null == 'fitted':
        norms, dof = norms / calibration.latent_null.scale, calibration.latent_null.dof
    return nfa_mask(norms, dof, rule.log10_epsilon)


def threshold_hits(
    scores: np.ndarray | torch.Tensor, rule: MaskRule, calibration: Calibration
) -> np.ndarray | torch.Tensor:
    """The ``fixed`` and ``fpr`` rules: boolean hits, on the scores' device for a tensor."""
    if rule.mode == 'fixed':
        return scores >= rule.threshold
    pixel, frame = calibrated_fpr_thresholds(calibration, rule.target_fpr)
    frame_flagged = scores.shape[0] * scores.shape[1] > 0 and float(scores.max()) >= frame
    return scores >= (pixel if frame_flagged else math.inf)


def resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A patch-grid mask at ``shape``, bilinear then >= 0.5, so edges follow the scores'."""
    if mask.shape == tuple(shape):
        return mask
    return upsample(torch.from_numpy(mask.astype(np.float32))[None], shape)[0].numpy() >= 0.5


def peak_fraction(rule: MaskRule, calibration: Calibration) -> float:
    """How far ``rule``'s regions are trimmed: its own setting, else the model's."""
    return calibration.peak_fraction if rule.peak_fraction is None else rule.peak_fraction


def _labelled(hits: np.ndarray) -> tuple[int, np.ndarray, np.ndarray, int]:
    """(N, ``hits`` sampled every Nth pixel to at most ``REGION_SIDE`` a side, labels, count).

    Labels are 8-connected. The map is smooth at a cell's size, and labelling a whole
    1280x720 mask costs tens of milliseconds; a region narrower than N pixels is dropped.
    """
    step = max(1, math.ceil(max(hits.shape) / REGION_SIDE))
    sampled = hits[::step, ::step]
    labels, count = ndimage.label(sampled, structure=EIGHT_CONNECTED)
    return step, sampled, labels, count


def _full_size(sampled: np.ndarray, step: int, shape: tuple[int, ...]) -> np.ndarray:
    if step == 1:
        return sampled
    return np.repeat(np.repeat(sampled, step, axis=0), step, axis=1)[: shape[0], : shape[1]]


def regions_meeting(hits: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """The 8-connected regions of ``hits`` that meet ``regions`` (any grid), whole.

    NFA regions are unions of latent cells: they say that something is there, not its shape.
    """
    if not hits.any() or not regions.any():
        return np.zeros_like(hits)
    step, sampled, labels, count = _labelled(hits)
    seeds = resize_mask(regions, sampled.shape) & sampled
    keep = np.zeros(count + 1, bool)
    keep[labels[seeds]] = True
    keep[0] = False
    return hits & _full_size(keep[labels], step, hits.shape)


def trim_to_peaks(
    hits: np.ndarray, scores: np.ndarray, fraction: float, calibration: Calibration
) -> np.ndarray:
    """Each 8-connected region of ``hits`` cut ``fraction`` of the way up to its peak.

    The way runs from the region's lowest to its highest score on the raw scale (the flow's
    units), where the calibration's saturation near 1 does not squash a strong region. Regions
    and their heights are found on a sampled copy (``_labelled``).
    """
    if fraction <= 0 or not hits.any():
        return hits
    step, sampled, labels, count = _labelled(hits)
    if count == 0:
        return np.zeros_like(hits)
    values = scores[::step, ::step]
    ids, inside = labels[sampled] - 1, values[sampled].astype(np.float64)
    low, high = np.full(count, np.inf), np.full(count, -np.inf)
    np.minimum.at(low, ids, inside)  # ndimage.minimum sorts the whole map: 10x slower
    np.maximum.at(high, ids, inside)
    raw_low, raw_high = uncalibrate(low, calibration), uncalibrate(high, calibration)
    raw_level = torch.from_numpy(raw_low + fraction * (raw_high - raw_low))
    level = np.concatenate([[np.inf], np.minimum(calibrate(raw_level, calibration).numpy(), high)])
    return hits & (scores >= _full_size(level[labels], step, hits.shape))


def drop_small(hits: np.ndarray, min_area: int) -> np.ndarray:
    """``hits`` without its 8-connected regions under ``min_area`` pixels."""
    if min_area <= 1 or not hits.any():
        return hits
    labels, count = ndimage.label(hits, structure=EIGHT_CONNECTED)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    keep = sizes >= min_area
    keep[0] = False
    return keep[labels]
