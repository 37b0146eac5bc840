# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Streaming pixel-level AP, AUROC and FPR95 over a whole data set, in constant memory.

Anomaly-segmentation benchmarks pool every non-void pixel of a data set (hundreds of millions)
before ranking, so exact sorting is out of reach. Scores are instead counted into a fixed-bin
histogram per class; each bin is one threshold, and pixels sharing a bin count as tied scores.
With scores that sit on bin centres the result equals the exact computation.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from flowclas_ros.core.config import IGNORE_LABEL
from flowclas_ros.core.metrics._common import bin_index, check_binning, check_pair

TPR_TARGET = 0.95


class PixelMetrics:
    """Accumulate per-class score histograms and derive AP, AUROC and FPR95 from them.

    Label 1 is the positive (anomaly) class, 0 normal, ``ignore_label`` void (dropped).
    Memory is ``2 * bins`` int64 counters whatever the amount of data.
    """

    def __init__(
        self, lo: float, hi: float, bins: int = 20000, ignore_label: int = IGNORE_LABEL
    ) -> None:
        """Fix the score range ``[lo, hi]`` split into ``bins`` equal bins.

        Scores outside the range are clipped into the edge bins, so choose a range that covers
        the scores the detector actually produces; resolution is ``(hi - lo) / bins``.
        """
        self.lo, self.hi, self.bins = check_binning(lo, hi, bins)
        self.ignore_label = int(ignore_label)
        # Row 0 counts normal pixels per bin, row 1 anomalous pixels.
        self._counts = np.zeros((2, self.bins), dtype=np.int64)

    @property
    def bin_centers(self) -> np.ndarray:
        """Score each bin stands for; scores placed here are binned without any rounding."""
        width = (self.hi - self.lo) / self.bins
        return self.lo + (np.arange(self.bins) + 0.5) * width

    def update(self, scores: Any, labels: Any) -> None:
        """Add one batch of pixels (any shape; numpy arrays or torch tensors).

        Raises:
            ValueError: shapes differ, labels outside {0, 1, ignore_label}, or NaN scores
                at non-void pixels.
        """
        s, y = check_pair(scores, labels, self.ignore_label)
        keep = y != self.ignore_label
        idx = bin_index(s[keep], self.lo, self.hi, self.bins)
        idx += self.bins * (y[keep] == 1)  # positives go to the second row
        self._counts += np.bincount(idx, minlength=2 * self.bins).reshape(2, self.bins)

    def merge(self, other: PixelMetrics) -> None:
        """Add another accumulator's counts, e.g. from a parallel worker.

        Raises:
            ValueError: the binning or void label differ, so bins would not line up.
        """
        mine = (self.lo, self.hi, self.bins, self.ignore_label)
        theirs = (other.lo, other.hi, other.bins, other.ignore_label)
        if mine != theirs:
            raise ValueError(
                f'cannot merge PixelMetrics with (lo, hi, bins, ignore) {theirs} '
                f'into one with {mine}'
            )
        self._counts += other._counts

    def reset(self) -> None:
        """Forget all pixels seen so far."""
        self._counts[:] = 0

    def histogram(self, bins: int = 100) -> dict[str, list]:
        """Normal and anomalous pixel counts over ``bins`` coarser bins, for plots."""
        if self.bins % bins:
            raise ValueError(f'{bins} does not divide the {self.bins} bins')
        counts = self._counts.reshape(2, bins, -1).sum(axis=2)
        edges = np.linspace(self.lo, self.hi, bins + 1)
        return {
            'edges': edges.tolist(),
            'normal': counts[0].tolist(),
            'anomaly': counts[1].tolist(),
        }

    def _from_top(self) -> tuple[np.ndarray, np.ndarray]:
        """True and false positives at threshold "bin k and above", from the top bin down."""
        tp = np.cumsum(self._counts[1, ::-1]).astype(np.float64)
        fp = np.cumsum(self._counts[0, ::-1]).astype(np.float64)
        return tp, fp

    def curves(self, points: int = 500) -> dict[str, list[float]]:
        """ROC (``fpr``, ``tpr``) and PR (``recall``, ``precision``) at ``points`` thresholds."""
        tp, fp = self._from_top()
        keep = np.unique(np.linspace(0, self.bins - 1, points).round().astype(int))
        tp, fp = tp[keep], fp[keep]
        n_pos, n_neg = max(tp[-1], 1.0), max(fp[-1], 1.0)
        precision = np.divide(tp, tp + fp, out=np.ones_like(tp), where=tp + fp > 0)
        return {
            'fpr': [0.0, *(fp / n_neg).tolist()],
            'tpr': [0.0, *(tp / n_pos).tolist()],
            'recall': [0.0, *(tp / n_pos).tolist()],
            'precision': [1.0, *precision.tolist()],
        }

    def iou_curve(self) -> tuple[np.ndarray, np.ndarray]:
        """IoU of "score >= threshold" with the anomalous pixels, at each bin's lower edge.

        Returns ``(thresholds, iou)``, thresholds increasing; IoU is 0 without anomalies.
        """
        tp, fp = (a[::-1] for a in self._from_top())
        union = tp[0] + fp
        iou = np.divide(tp, union, out=np.zeros_like(tp), where=union > 0)
        return self.lo + np.arange(self.bins) * (self.hi - self.lo) / self.bins, iou

    def compute(self) -> dict[str, float]:
        """Return ``ap``, ``auroc``, ``fpr95`` (NaN if a class is empty), ``n_pos``, ``n_neg``.

        Thresholds run from the highest bin down; each bin is one step, like one tied score.
        """
        neg = self._counts[0, ::-1].astype(np.float64)
        pos = self._counts[1, ::-1].astype(np.float64)
        n_neg, n_pos = int(self._counts[0].sum()), int(self._counts[1].sum())
        out: dict[str, float] = {'n_pos': n_pos, 'n_neg': n_neg}
        if n_pos == 0 or n_neg == 0:
            out.update(ap=float('nan'), auroc=float('nan'), fpr95=float('nan'))
            return out
        tp, fp = self._from_top()
        # AP: recall only moves at bins holding positives, and there tp + fp > 0.
        step = pos > 0
        out['ap'] = float(np.sum(pos[step] / n_pos * tp[step] / (tp[step] + fp[step])))
        # AUROC = P(pos > neg) + P(pos == neg) / 2, pairing each bin's negatives with the
        # positives above it (strictly) and in it (tied).
        above = tp - pos
        out['auroc'] = float(np.sum(neg * (above + 0.5 * pos)) / (n_pos * n_neg))
        k = int(np.argmax(tp / n_pos >= TPR_TARGET))  # first threshold reaching the target
        out['fpr95'] = float(fp[k] / n_neg)
        return out
