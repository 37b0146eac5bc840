# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""The threshold whose masks best outline known anomalies, for ``train.threshold_on: outlines``.

The normal 99th percentile says how rare a score is, not where an anomaly's border lies: a
defect's blob can sit far above it, so a mask cut there covers the blob. Where labelled (or
pasted) anomalies are at hand, the cut that best outlines them is measurable.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

# Candidate cuts: this many quantiles of the anomalous pixels' scores.
CANDIDATES = 257


def best_outline_threshold(pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> float | None:
    """The raw score ``t`` whose masks ``scores >= t`` reach the best mean IoU over frames.

    ``pairs`` are full-size raw scores and labels (1 anomaly, 0 normal, anything else void) of
    the same shape. Frames without anomalous pixels are left out (their IoU is undefined);
    None when no frame has any.
    """
    frames = []
    for scores, labels in pairs:
        s, y = np.asarray(scores, dtype=np.float64), np.asarray(labels)
        if s.shape != y.shape:
            raise ValueError(f'scores {s.shape} and labels {y.shape} differ in shape')
        pos = np.sort(s[y == 1])
        if pos.size:
            frames.append((pos, np.sort(s[y == 0])))
    if not frames:
        return None
    anomalous = np.concatenate([pos for pos, _ in frames])
    cuts = np.unique(np.quantile(anomalous, np.linspace(0, 1, CANDIDATES)))
    iou = np.zeros(cuts.size)
    for pos, neg in frames:
        tp = pos.size - np.searchsorted(pos, cuts, side='left')
        fp = neg.size - np.searchsorted(neg, cuts, side='left')
        iou += tp / (pos.size + fp)
    return float(cuts[int(np.argmax(iou))])
