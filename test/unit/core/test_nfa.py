# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""A contrario NFA masks: the null gives nothing, planted anomalies are found, tails are exact."""

import math

import mpmath
import numpy as np
import pytest
from scipy import ndimage, stats

from flowclas_ros.core.thresholds.nfa import (
    _log_upper_gamma_cf,
    log10_chi2_tail,
    log10_tests,
    nfa_mask,
    nfa_regions,
)

H = W = 32


def latent_norms(rng, dof, scale=None, box=None):
    z = rng.standard_normal((dof, H, W))
    if box is not None:
        z[:, box[0] : box[1], box[2] : box[3]] *= scale
    return (z**2).sum(axis=0)


@pytest.mark.parametrize('dof', [16, 64])
def test_standard_normal_latents_give_no_detection(dof):
    rng = np.random.default_rng(dof)
    detections = [nfa_mask(latent_norms(rng, dof), dof).sum() for _ in range(100)]
    assert sum(detections) == 0


@pytest.mark.parametrize('box', [(8, 16, 10, 20), (0, 6, 0, 12), (20, 31, 3, 9)])
def test_planted_region_is_found(box):
    rng = np.random.default_rng(sum(box))
    q = latent_norms(rng, 64, 2.5, box)
    truth = np.zeros((H, W), dtype=bool)
    truth[box[0] : box[1], box[2] : box[3]] = True
    mask = nfa_mask(q, 64)
    assert (mask & truth).sum() / (mask | truth).sum() >= 0.8


def test_tail_matches_scipy_and_stays_finite_beyond_it():
    for dof in (16, 64, 384, 1024):
        # Deep tails where SciPy is still finite: the continued fraction agrees with it.
        t = np.linspace(dof + 20 * math.sqrt(dof), dof + 1200, 40)
        ref = stats.chi2.logsf(t, dof)
        assert np.isfinite(ref).all()
        assert ref.min() < -200
        np.testing.assert_allclose(_log_upper_gamma_cf(dof / 2, t / 2), ref, rtol=1e-10)
        ours = log10_chi2_tail(t, dof)
        np.testing.assert_allclose(ours, ref / math.log(10), rtol=1e-12)
    # Beyond SciPy's range (it returns -inf), against 60-digit arithmetic.
    mpmath.mp.dps = 60
    for dof, t in ((64, 1e4), (384, 1e5), (1024, 1e6)):
        assert stats.chi2.logsf(t, dof) == -np.inf
        upper = mpmath.gammainc(dof / 2, t / 2, mpmath.inf, regularized=True)
        exact = float(mpmath.log10(upper))
        assert float(log10_chi2_tail(np.array([t]), dof)[0]) == pytest.approx(exact, rel=1e-10)
    t = np.geomspace(1, 1e7, 200)
    tail = log10_chi2_tail(t, 64)
    assert np.isfinite(tail).all()
    assert np.all(np.diff(tail) < 0)


def test_low_norms_where_the_chernoff_bound_fails_give_no_detection():
    # Every patch at half its expected norm (t <= C): nothing unusual, so nothing is found.
    dof = 64
    q = np.full((H, W), dof / 2.0) + np.random.default_rng(0).uniform(0, 1, (H, W))
    assert not nfa_mask(q, dof).any()
    # The Chernoff bound (t/C e^(1 - t/C))^(C/2) would have called the whole image anomalous.
    ratio = q.min() / dof
    chernoff = dof / 2 * (math.log(ratio) + 1 - ratio) / math.log(10)
    assert log10_tests(H * W) + H * W * chernoff < 0


def test_regions_are_disjoint_and_input_is_checked():
    rng = np.random.default_rng(3)
    q = latent_norms(rng, 64, 3.0, (2, 8, 2, 8))
    q[20:26, 20:30] *= 9.0
    found = [r for r in nfa_regions(q, 64) if r[3] < 0]
    assert len(found) == 2
    _, blobs = ndimage.label(nfa_mask(q, 64))
    assert blobs == 2
    assert nfa_mask(q, 64, log10_epsilon=-1e9).sum() == 0  # nothing is that significant
    with pytest.raises(ValueError, match='finite'):
        nfa_mask(np.full((4, 4), np.nan), 64)
    with pytest.raises(ValueError, match='non-empty'):
        nfa_mask(np.zeros((0, 4)), 64)
