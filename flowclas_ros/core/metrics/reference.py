# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Exact, sort-based versions of the metrics, to test the histogram accumulators against.

They hold every pixel in memory, so use them for tests and small inputs only. Tied scores form
a single threshold, as in scikit-learn's ``average_precision_score`` and ``roc_auc_score``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from flowclas_ros.core.config import IGNORE_LABEL
from flowclas_ros.core.metrics._common import area_up_to, check_pair, label_regions

TPR_TARGET = 0.95


def _descending_ties(scores: np.ndarray, *weights: np.ndarray) -> list[np.ndarray]:
    """Sort by descending score; return cumulative ``weights`` at the end of each tie group."""
    order = np.argsort(-scores, kind='stable')
    s = scores[order]
    ends = np.flatnonzero(np.r_[s[1:] != s[:-1], True])
    return [np.cumsum(w[order])[ends] for w in weights]


def exact_pixel_metrics(
    scores: Any, labels: Any, ignore_label: int = IGNORE_LABEL
) -> dict[str, float]:
    """Compute ``ap``, ``auroc``, ``fpr95``, ``n_pos``, ``n_neg`` exactly by sorting all pixels.

    Same conventions as ``PixelMetrics.compute``: void pixels dropped, NaN metrics when a class
    is empty, AP as the step-wise sum of ``(R_k - R_{k-1}) * P_k``.
    """
    s, y = check_pair(scores, labels, ignore_label)
    keep = y != ignore_label
    s = s[keep].ravel()
    is_pos = (y[keep] == 1).ravel()
    n_pos = int(is_pos.sum())
    n_neg = int(is_pos.size - n_pos)
    out: dict[str, float] = {'n_pos': n_pos, 'n_neg': n_neg}
    if n_pos == 0 or n_neg == 0:
        out.update(ap=float('nan'), auroc=float('nan'), fpr95=float('nan'))
        return out
    tp, fp = _descending_ties(s, is_pos.astype(np.int64), (~is_pos).astype(np.int64))
    recall = tp / n_pos
    precision = tp / (tp + fp)
    out['ap'] = float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
    tpr = np.r_[0.0, recall]
    fpr = np.r_[0.0, fp / n_neg]
    out['auroc'] = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) * 0.5))
    out['fpr95'] = float(fpr[1:][np.flatnonzero(recall >= TPR_TARGET)[0]])
    return out


def exact_aupro(
    score_maps: Sequence[Any],
    label_maps: Sequence[Any],
    max_fpr: float = 0.3,
    ignore_label: int = IGNORE_LABEL,
) -> float:
    """Compute MVTec-style AUPRO exactly, with one curve point per distinct score.

    Regions are the 8-connected components of ``label == 1`` in each map. The PRO-vs-FPR curve
    starts at (0, 0), is integrated by trapezoids up to ``max_fpr`` (interpolated there) and
    divided by ``max_fpr``. Returns NaN without regions or without normal pixels.
    """
    if not 0.0 < max_fpr <= 1.0:
        raise ValueError(f'max_fpr must be in (0, 1], got {max_fpr}')
    if len(score_maps) != len(label_maps):
        raise ValueError(f'{len(score_maps)} score maps but {len(label_maps)} label maps')
    neg_scores, region_scores, region_weights = [], [], []
    n_regions = 0
    for score_map, label_map in zip(score_maps, label_maps, strict=True):
        s, y = check_pair(score_map, label_map, ignore_label)
        if s.ndim != 2:
            raise ValueError(f'score maps must be 2-D, got shape {s.shape}')
        neg_scores.append(s[y == 0])
        labelled, count = label_regions(y)
        in_region = labelled > 0
        ids = labelled[in_region]
        region_scores.append(s[in_region])
        region_weights.append(1.0 / np.bincount(ids)[ids])  # each region sums to 1
        n_regions += count
    negs = np.concatenate(neg_scores) if neg_scores else np.zeros(0)
    if n_regions == 0 or negs.size == 0:
        return float('nan')
    regs = np.concatenate(region_scores)
    scores = np.r_[negs, regs]
    is_neg = np.r_[np.ones(negs.size, np.int64), np.zeros(regs.size, np.int64)]
    overlap = np.r_[np.zeros(negs.size), np.concatenate(region_weights)]
    fp, covered = _descending_ties(scores, is_neg, overlap)
    fpr = np.r_[0.0, fp / negs.size]
    pro = np.r_[0.0, np.minimum(covered / n_regions, 1.0)]
    return area_up_to(fpr, pro, max_fpr) / max_fpr
