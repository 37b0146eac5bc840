# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Streaming MVTec-style AUPRO (area under the per-region-overlap curve) in constant memory.

Pixel AUROC lets one large defect dominate; PRO weights every connected anomaly region equally,
so small defects count as much as big ones. The curve plots mean region overlap against the
false-positive rate on normal pixels and is integrated only up to a low FPR (0.3 by default),
the operating range that matters in practice.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from flowclas_ros.core.config import IGNORE_LABEL
from flowclas_ros.core.metrics._common import (
    area_up_to,
    bin_index,
    check_binning,
    check_pair,
    label_regions,
)


class AuproMetric:
    """Accumulate AUPRO over images one at a time, with memory fixed by ``bins``.

    Per region, the fraction of its pixels at or above each threshold is a reverse cumulative
    sum of the region's histogram divided by its size. Summing that over regions is linear, so
    it is kept as one histogram in which each region pixel weighs ``1 / region size``; the
    reverse cumulative sum is taken once in ``compute``.
    """

    def __init__(
        self,
        lo: float,
        hi: float,
        bins: int = 20000,
        max_fpr: float = 0.3,
        ignore_label: int = IGNORE_LABEL,
    ) -> None:
        """Fix the score range ``[lo, hi]`` in ``bins`` bins and the FPR integration limit.

        Scores outside the range are clipped into the edge bins.
        """
        self.lo, self.hi, self.bins = check_binning(lo, hi, bins)
        if not 0.0 < max_fpr <= 1.0:
            raise ValueError(f'max_fpr must be in (0, 1], got {max_fpr}')
        self.max_fpr = float(max_fpr)
        self.ignore_label = int(ignore_label)
        self._neg = np.zeros(self.bins, dtype=np.int64)  # normal pixels per bin
        self._overlap = np.zeros(self.bins, dtype=np.float64)  # region pixels, 1 / size each
        self._n_regions = 0

    def update(self, score_map: Any, label_map: Any) -> None:
        """Add ONE image: 2-D score and label maps of the same shape.

        Regions never span images, which is why maps are given one at a time.

        Raises:
            ValueError: maps are not 2-D or differ in shape, labels outside
                {0, 1, ignore_label}, or NaN scores at non-void pixels.
        """
        s, y = check_pair(score_map, label_map, self.ignore_label)
        if s.ndim != 2:
            raise ValueError(f'update takes one image: 2-D maps, got shape {s.shape}')
        neg = y == 0
        self._neg += np.bincount(
            bin_index(s[neg], self.lo, self.hi, self.bins), minlength=self.bins
        )
        labelled, count = label_regions(y)
        if count == 0:
            return
        in_region = labelled > 0
        ids = labelled[in_region]
        sizes = np.bincount(ids)
        self._overlap += np.bincount(
            bin_index(s[in_region], self.lo, self.hi, self.bins),
            weights=1.0 / sizes[ids],
            minlength=self.bins,
        )
        self._n_regions += count

    def merge(self, other: AuproMetric) -> None:
        """Add another accumulator's state, e.g. from a parallel worker.

        Raises:
            ValueError: binning, ``max_fpr`` or void label differ.
        """
        mine = (self.lo, self.hi, self.bins, self.max_fpr, self.ignore_label)
        theirs = (other.lo, other.hi, other.bins, other.max_fpr, other.ignore_label)
        if mine != theirs:
            raise ValueError(
                f'cannot merge AuproMetric with (lo, hi, bins, max_fpr, ignore) '
                f'{theirs} into one with {mine}'
            )
        self._neg += other._neg
        self._overlap += other._overlap
        self._n_regions += other._n_regions

    def reset(self) -> None:
        """Forget all images seen so far."""
        self._neg[:] = 0
        self._overlap[:] = 0.0
        self._n_regions = 0

    @property
    def n_regions(self) -> int:
        """Anomaly regions seen so far; AUPRO averages over these."""
        return self._n_regions

    def compute(self) -> float:
        """Return AUPRO normalised to [0, 1]; NaN without regions or without normal pixels.

        The curve starts at (0, 0) (threshold above every score) and has one point per bin,
        from the highest down; it is cut at ``max_fpr`` by linear interpolation.
        """
        n_neg = int(self._neg.sum())
        if self._n_regions == 0 or n_neg == 0:
            return float('nan')
        fpr = np.r_[0.0, np.cumsum(self._neg[::-1]) / n_neg]
        pro = np.r_[0.0, np.minimum(np.cumsum(self._overlap[::-1]) / self._n_regions, 1.0)]
        return area_up_to(fpr, pro, self.max_fpr) / self.max_fpr
