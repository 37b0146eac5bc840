# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Choosing a mask rule: the best outline within the budget of defect-free frames marked."""

import pytest

from flowclas_ros.core.errors import DataError
from flowclas_ros.core.mask_choice import Budget, Quality, candidate_rules, choose
from flowclas_ros.core.masks import MASK_MODES, NFA_NULLS, MaskRule


def test_the_grid_holds_every_rule_and_null_once_each_trimmed_and_whole():
    rules = candidate_rules(min_area=7)
    assert len(set(rules)) == len(rules)
    assert {r.mode for r in rules} == set(MASK_MODES)
    assert {r.nfa_null for r in rules if r.reads_norms} == set(NFA_NULLS)
    assert {r.peak_fraction for r in rules} >= {0.0, 0.4}
    assert all(r.min_area == 7 for r in rules)
    # Magnetic-Tile's cascade recipe (docs/masks.md) is among them.
    assert MaskRule('fixed_nfa', 0.8, 0.01, 32.0, 0, 'fitted', 0.0) in candidate_rules()


def test_the_best_outline_within_the_budget_wins_and_ties_go_to_fewer_marks_then_simpler():
    a, b, c, d = (MaskRule('fixed', threshold=t) for t in (0.5, 0.6, 0.7, 0.8))
    quality = {  # of 20 defect-free frames
        a: Quality(0.40, 6, 20),  # best outline, over the budget
        b: Quality(0.30, 2, 20),
        c: Quality(0.30, 1, 20),
        d: Quality(0.20, 0, 20),
    }
    assert choose(quality, Budget(0.1, 0)) == c
    assert choose(quality, Budget(0.3, 0)) == a
    assert choose(quality, Budget(0.0, 0)) == d
    assert choose({b: Quality(0.3, 0, 20), c: Quality(0.3, 0, 20)}, Budget(0.1, 0)) == b


def test_the_budget_must_hold_with_its_confidence():
    # 0 of 20 marked: with 90 % confidence at most 1 - 0.1 ** (1 / 20) = 10.9 % of such frames.
    assert Quality(0.3, 0, 20).marked_bound(0.9) == pytest.approx(1 - 0.1 ** (1 / 20))
    assert Quality(0.3, 0, 22).marked_bound(0.9) < 0.1 < Quality(0.3, 0, 21).marked_bound(0.9)
    assert Quality(0.3, 2, 20).marked_bound(0) == 0.1
    assert Quality(0.3, 20, 20).marked_bound(0.9) == 1.0
    # More frames, the same share: a tighter bound.
    assert Quality(0.3, 5, 100).marked_bound(0.9) < Quality(0.3, 1, 20).marked_bound(0.9)
    close, sure = MaskRule('fixed', threshold=0.5), MaskRule('fixed', threshold=0.9)
    quality = {close: Quality(0.4, 4, 52), sure: Quality(0.3, 1, 52)}  # 7.7 % and 1.9 %
    assert choose(quality, Budget(0.1, 0)) == close
    assert choose(quality, Budget(0.1, 0.9)) == sure


@pytest.mark.parametrize(
    ('quality', 'budget', 'message'),
    [
        ({MaskRule(): Quality(0.3, 5, 10)}, Budget(0.1, 0), r'at most 10%.*\(the fewest: 5 of 10'),
        ({MaskRule(): Quality(0.3, 0, 5)}, Budget(0.1, 0.9), 'with 90% confidence'),
        ({MaskRule(): Quality(0.3, 0, 0)}, Budget(), 'needs defect-free frames'),
        ({MaskRule(): Quality(None, 0, 5)}, Budget(), 'needs frames with anomalies'),
    ],
)
def test_what_cannot_be_chosen_says_why(quality, budget, message):
    with pytest.raises(DataError, match=message):
        choose(quality, budget)


@pytest.mark.parametrize(('share', 'confidence'), [(1.5, 0.9), (-0.1, 0.9), (0.1, 1.0)])
def test_a_budget_out_of_range_is_refused(share, confidence):
    with pytest.raises(DataError, match='must be in'):
        Budget(share, confidence)
