# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""The cut that best outlines known anomalies, and calibration centred on it."""

import numpy as np
import pytest
import torch

from flowclas_ros.core.config import PEAK_FRACTION
from flowclas_ros.core.data.outliers import PseudoOutliers
from flowclas_ros.core.flowclas.scoring import fit_calibration
from flowclas_ros.core.flowclas.train.validation import OUTLINE_FRAMES, Validation
from flowclas_ros.core.thresholds.outline import best_outline_threshold


def _blob(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A defect (scores near 5) inside a halo (near 3) on a normal background (near 1)."""
    yy, xx = np.mgrid[:64, :64]
    r = np.hypot(yy - 32, xx - 32)
    scores = np.where(r < 8, 5.0, np.where(r < 20, 3.0, 1.0)) + rng.normal(0, 0.1, r.shape)
    return scores, (r < 8).astype(np.uint8)


def test_the_cut_separates_a_defect_from_the_halo_around_it():
    rng = np.random.default_rng(0)
    frames = [_blob(rng) for _ in range(3)]
    t = best_outline_threshold(frames)
    assert 3.5 < t < 5.0  # above the halo: a cut at the halo would mark it all
    scores, labels = frames[0]
    assert ((scores >= t) == (labels == 1)).mean() > 0.99
    # Labelled halo and all, the cut moves below the halo.
    whole = [(s, (s > 2).astype(np.uint8)) for s, _ in frames]
    assert best_outline_threshold(whole) < 3.0


def test_void_and_frames_without_anomalies_count_for_nothing():
    rng = np.random.default_rng(1)
    scores, labels = _blob(rng)
    inside = labels == 1
    scores[inside] = rng.uniform(2.5, 5.0, int(inside.sum()))  # the defect's weak part: halo-like
    # Scored as normal, the halo keeps the cut above it, at the cost of the weak part ...
    assert best_outline_threshold([(scores, labels)]) > 3.2
    # ... left void, it costs nothing: the cut takes the whole defect.
    void = labels.copy()
    void[(scores > 2) & ~inside] = 255
    assert best_outline_threshold([(scores, void)]) == pytest.approx(scores[inside].min())
    assert best_outline_threshold([(scores, np.zeros_like(labels))]) is None
    with pytest.raises(ValueError, match='differ in shape'):
        best_outline_threshold([(scores, labels[:10])])


def test_calibration_moves_one_half_up_to_the_outline_never_down():
    rng = np.random.default_rng(2)
    normal = rng.normal(1.0, 0.1, (20, 16, 16))
    p99 = np.quantile(normal, 0.99)
    frames = [_blob(rng) for _ in range(2)]
    up = fit_calibration(normal, outlines=frames)
    assert up.center == best_outline_threshold(frames) > p99
    assert up.quantiles['0.99'] == pytest.approx(p99)
    # Masks cut at an outline are kept whole; masks cut at the percentile are trimmed.
    assert up.peak_fraction == 0
    assert fit_calibration(normal).peak_fraction == PEAK_FRACTION > 0
    # Anomalies scoring inside the normal range leave 0.5 at the normal 99th percentile.
    low = [(s - 4.5, y) for s, y in frames]
    kept = fit_calibration(normal, outlines=low)
    assert kept.center == pytest.approx(p99)
    assert kept.peak_fraction == PEAK_FRACTION


def test_outline_frames_are_a_labelled_splits_own_or_enough_pasted_copies():
    gen = torch.Generator().manual_seed(0)
    images = [
        torch.randint(0, 256, (3, 32, 48), generator=gen, dtype=torch.uint8) for _ in range(3)
    ]
    with_defect = torch.zeros(32, 48, dtype=torch.uint8)
    with_defect[4:9, 4:9] = 1
    labelled = Validation(
        images, [with_defect, torch.zeros_like(with_defect), with_defect], [images[1]]
    )
    frames = labelled.outline_frames(seed=0)
    assert len(frames) == 2
    assert all(torch.equal(y, with_defect) for _, y in frames)

    pasted = Validation(images, [with_defect] * 3, images, PseudoOutliers(None, (32, 48)))
    frames = pasted.outline_frames(seed=0)
    assert len(frames) >= OUTLINE_FRAMES
    assert all(
        x.dtype == torch.uint8 and x.shape == (3, 32, 48) and (y == 1).any() for x, y in frames
    )
    again = pasted.outline_frames(seed=0)  # a fixed seed: the same cut on every call
    assert all(torch.equal(a[1], b[1]) for a, b in zip(frames, again, strict=True))
