# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Binary anomaly masks from a frame's scores, by one of three rules.

``fixed``: calibrated score >= ``threshold``. ``fpr``: the thresholds that mark
``target_fpr`` of normal validation pixels, applied only in frames whose largest score is
above the threshold that flags ``target_fpr`` of normal validation frames. ``nfa``: the a
contrario regions of the latent norms with log10 NFA < ``log10_epsilon``, no tuning at all,
under the chi-square null with C degrees of freedom (``nfa_null='chi2'``, U-Flow's) or the
``scale * chi2(dof)`` fitted on normal validation patches (``'fitted'``).
"""

from __future__ import annotations

from dataclasses import dataclass
import math

import numpy as np
from scipy import ndimage
import torch

from flowclas_ros.core.config import Calibration
from flowclas_ros.core.errors import ConfigError
from flowclas_ros.core.flowclas.model import upsample
from flowclas_ros.core.flowclas.scoring import calibrate
from flowclas_ros.core.thresholds.fpr import TARGET_FPR_TEXT, fpr_thresholds, valid_target_fpr
from flowclas_ros.core.thresholds.nfa import nfa_mask

MASK_MODES = ('fixed', 'fpr', 'nfa')
# Rules that only compare each pixel's score with a threshold (no region analysis).
THRESHOLD_MODES = ('fixed', 'fpr')
NFA_NULLS = ('chi2', 'fitted')


@dataclass(frozen=True)
class MaskRule:
    """Which rule cuts the mask, its one setting, and the smallest region kept (pixels)."""

    mode: str = 'fixed'
    threshold: float = 0.5
    target_fpr: float = 0.01
    log10_epsilon: float = 0.0
    min_area: int = 0
    nfa_null: str = 'chi2'

    def __post_init__(self) -> None:
        if self.mode not in MASK_MODES:
            raise ConfigError(f'mask_mode must be one of {MASK_MODES}, got {self.mode!r}')
        if not 0 <= self.threshold <= 1:
            raise ConfigError(f'threshold must be in [0, 1], got {self.threshold}')
        if not valid_target_fpr(self.target_fpr):
            raise ConfigError(f'target_fpr must be in {TARGET_FPR_TEXT}, got {self.target_fpr}')
        if self.nfa_null not in NFA_NULLS:
            raise ConfigError(f'nfa_null must be one of {NFA_NULLS}, got {self.nfa_null!r}')
        if self.min_area < 0:
            raise ConfigError(f'mask_min_area must be >= 0, got {self.min_area}')

    @classmethod
    def from_settings(cls, s: object) -> MaskRule:
        """From the names the node parameters and the tools' options share (``mask_mode``...)."""
        return cls(
            s.mask_mode,
            s.threshold,
            s.target_fpr,
            s.nfa_log10_epsilon,
            s.mask_min_area,
            s.nfa_null,
        )


def rule_name(rule: MaskRule) -> str:
    """``fixed``, ``fpr``, ``nfa`` or ``nfa_fitted``: how reports label a rule."""
    return 'nfa_fitted' if rule.mode == 'nfa' and rule.nfa_null == 'fitted' else rule.mode


def missing(rule: MaskRule, calibration: Calibration, has_norms: bool) -> str | None:
    """Why ``rule`` cannot run with this calibration (and norms or not), or None if it can."""
    if rule.mode == 'fpr' and calibration.fpr is None:
        return (
            'the model has no false-positive-rate table (trained before it existed); '
            'run flowclas-calibrate on normal images, or use mask_mode fixed or nfa'
        )
    if rule.mode == 'nfa' and not has_norms:
        return 'mask mode nfa needs the latent norms, and recorded scores have none'
    if rule.mode == 'nfa' and rule.nfa_null == 'fitted' and calibration.latent_null is None:
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
        norms: latent norms on the patch grid (h, w); only the ``nfa`` rule reads them.
        rule: the rule and its settings.
        calibration: the model's calibration (``fpr`` reads its table).
        channels: latent dimensions, the chi-square degrees of freedom of the ``chi2`` null.
    """
    require(rule, calibration, norms is not None)
    if rule.mode in THRESHOLD_MODES:
        hits = threshold_hits(scores, rule, calibration)
    else:
        dof = channels
        if rule.nfa_null == 'fitted':
            norms, dof = norms / calibration.latent_null.scale, calibration.latent_null.dof
        hits = resize_mask(nfa_mask(norms, dof, rule.log10_epsilon), scores.shape)
    return drop_small(hits, rule.min_area).astype(np.uint8) * 255


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


def drop_small(hits: np.ndarray, min_area: int) -> np.ndarray:
    """``hits`` without its 8-connected regions under ``min_area`` pixels."""
    if min_area <= 1 or not hits.any():
        return hits
    labels, count = ndimage.label(hits, structure=np.ones((3, 3), bool))
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    keep = sizes >= min_area
    keep[0] = False
    return keep[labels]
