# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Choosing a mask rule and its settings on a user's own labelled frames.

Which rule outlines best differs between models and scenes (docs/masks.md): on Magnetic-Tile
the NFA regions outline the coarse map best, the ``fixed_nfa`` rule the cascade's, and the
road preset's obstacles are outlined at 0.5 already. So ``flowclas-eval --choose-mask``
measures every rule over a grid of its settings and keeps the one with the best mean IoU over
the frames with anomalies among those that mark at most a budget of the defect-free frames.
Its masks are then measured on the frames they were chosen on: confirm on others.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from scipy.stats import beta

from flowclas_ros.core.errors import DataError
from flowclas_ros.core.masks import NFA_NULLS, MaskRule

THRESHOLDS = (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
TARGET_FPRS = (0.001, 0.003, 0.01, 0.03, 0.1)
LOG10_EPSILONS = (0.0, 8.0, 16.0, 24.0, 32.0, 48.0)
PEAK_FRACTIONS = (0.0, 0.2, 0.4)
# Share of defect-free frames the chosen rule may mark (any pixel) ...
MARKED_BUDGET = 0.1
# ... with this confidence: the share measured on a few dozen frames is noisy, and the best of
# hundreds of rules is the one whose count came out low by chance.
CONFIDENCE = 0.9


def candidate_rules(min_area: int = 0) -> list[MaskRule]:
    """Every rule over the grid of its settings, each untrimmed and trimmed, simplest first."""
    rules = []
    for fraction in PEAK_FRACTIONS:
        base = MaskRule(min_area=min_area, peak_fraction=fraction)
        rules += [replace(base, mode='fixed', threshold=t) for t in THRESHOLDS]
        rules += [replace(base, mode='fpr', target_fpr=f) for f in TARGET_FPRS]
        for null in NFA_NULLS:
            for eps in LOG10_EPSILONS:
                nfa = replace(base, mode='nfa', log10_epsilon=eps, nfa_null=null)
                rules.append(nfa)
                rules += [replace(nfa, mode='fixed_nfa', threshold=t) for t in THRESHOLDS]
    return rules


@dataclass(frozen=True)
class Quality:
    """A rule's masks on labelled frames.

    ``miou``: mean IoU over the frames with anomalies (None without any); ``marked`` of the
    ``free`` defect-free frames have a pixel marked.
    """

    miou: float | None
    marked: int
    free: int

    def marked_bound(self, confidence: float) -> float:
        """The most it would mark of frames like the defect-free ones, with ``confidence``.

        One-sided Clopper-Pearson; at confidence 0, the share measured.
        """
        if confidence == 0:
            return self.marked / self.free
        if self.marked == self.free:
            return 1.0
        return float(beta.ppf(confidence, self.marked + 1, self.free - self.marked))


@dataclass(frozen=True)
class Budget:
    """At most ``share`` of defect-free frames marked, with ``confidence``."""

    share: float = MARKED_BUDGET
    confidence: float = CONFIDENCE

    def __post_init__(self) -> None:
        if not 0 <= self.share <= 1:
            raise DataError(f'the mask budget must be in [0, 1], got {self.share}')
        if not 0 <= self.confidence < 1:
            raise DataError(f'the mask confidence must be in [0, 1), got {self.confidence}')

    def holds(self, quality: Quality) -> bool:
        return quality.marked_bound(self.confidence) <= self.share


def choose(quality: dict[MaskRule, Quality], budget: Budget = Budget()) -> MaskRule:
    """The best mean IoU among the rules marking at most ``budget`` of defect-free frames.

    A rule qualifies when the budget holds with its confidence (``Quality.marked_bound``).
    Ties go to fewer marked frames, then to the earlier (simpler) rule.
    """
    measured = [(r, q) for r, q in quality.items() if q.miou is not None]
    if not measured:
        raise DataError('choosing a mask rule needs frames with anomalies in their masks')
    if any(q.free == 0 for _, q in measured):
        raise DataError(
            'choosing a mask rule needs defect-free frames to count the frames it marks by '
            'mistake: add normal frames of the site with all-zero masks'
        )
    within = [(r, q) for r, q in measured if budget.holds(q)]
    if not within:
        least = min(measured, key=lambda rq: rq[1].marked)[1]
        raise DataError(
            f'no rule marks at most {budget.share:.0%} of defect-free frames with '
            f'{budget.confidence:.0%} confidence (the fewest: {least.marked} of {least.free}); '
            'add normal frames with all-zero masks, raise --mask-budget or lower '
            '--mask-confidence'
        )
    order = {r: i for i, (r, _) in enumerate(measured)}
    return max(within, key=lambda rq: (rq[1].miou, -rq[1].marked, -order[rq[0]]))[0]
