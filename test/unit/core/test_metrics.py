# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Histogram metric accumulators against exact sort-based references and hand-worked cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flowclas_ros.core.metrics import (
    AuproMetric,
    PixelMetrics,
    exact_aupro,
    exact_pixel_metrics,
)

KEYS = ('ap', 'auroc', 'fpr95')


def _random_pixels(rng, n, centers=None, void_frac=0.1):
    """Labels with ~20 % anomalies and void; anomalies score higher on average."""
    labels = (rng.random(n) < 0.2).astype(np.uint8)
    labels[rng.random(n) < void_frac] = 255
    scores = rng.normal(0.0, 1.0, n) + 1.2 * (labels == 1)
    if centers is not None:  # snap to bin centres: binning is then lossless
        idx = np.clip(np.round((scores + 4.0) / 8.0 * len(centers) - 0.5), 0, len(centers) - 1)
        scores = centers[idx.astype(int)]
    return scores, labels


def _state_nbytes(obj):
    return sum(v.nbytes for v in vars(obj).values() if isinstance(v, np.ndarray))


def _blob_maps(rng, n_images, shape=(24, 32), quantize=None):
    """Images with a couple of rectangular anomaly blobs, some void, and noisy scores."""
    scores, labels = [], []
    for _ in range(n_images):
        y = np.zeros(shape, np.uint8)
        for _ in range(rng.integers(1, 3)):
            r, c = rng.integers(0, shape[0] - 6), rng.integers(0, shape[1] - 6)
            y[r : r + rng.integers(2, 6), c : c + rng.integers(2, 6)] = 1
        y[rng.random(shape) < 0.03] = 255
        s = rng.normal(0.0, 1.0, shape) + 1.5 * (y == 1)
        if quantize is not None:
            idx = np.clip(np.round((s + 4.0) / 8.0 * len(quantize) - 0.5), 0, len(quantize) - 1)
            s = quantize[idx.astype(int)]
        scores.append(s)
        labels.append(y)
    return scores, labels


# ----------------------------------------------------------------------------- pixel metrics


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_histogram_equals_exact_on_bin_centres(seed):
    rng = np.random.default_rng(seed)
    m = PixelMetrics(-4.0, 4.0, bins=64)  # few bins -> many ties per bin
    scores, labels = _random_pixels(rng, 20000, centers=m.bin_centers)
    m.update(scores, labels)
    got, want = m.compute(), exact_pixel_metrics(scores, labels)
    assert got['n_pos'] == want['n_pos']
    assert got['n_neg'] == want['n_neg']
    for k in KEYS:
        assert got[k] == pytest.approx(want[k], abs=1e-9), k


def test_histogram_close_to_exact_on_continuous_scores():
    rng = np.random.default_rng(3)
    scores, labels = _random_pixels(rng, 200000)
    m = PixelMetrics(-6.0, 7.0, bins=20000)
    m.update(scores, labels)
    got, want = m.compute(), exact_pixel_metrics(scores, labels)
    for k in KEYS:
        assert got[k] == pytest.approx(want[k], abs=1e-3), k


def test_perfect_separator():
    labels = np.array([0, 0, 0, 1, 1, 255])
    scores = np.array([0.1, 0.2, 0.3, 0.8, 0.9, 0.5])
    m = PixelMetrics(0.0, 1.0, bins=100)
    m.update(scores, labels)
    for res in (m.compute(), exact_pixel_metrics(scores, labels)):
        assert (res['ap'], res['auroc'], res['fpr95']) == (1.0, 1.0, 0.0)
        assert (res['n_pos'], res['n_neg']) == (2, 3)


def test_hand_computed_case():
    # Descending: 0.9(+) 0.8(-) 0.7(+) 0.6(-) 0.5(+) 0.4(-); P = N = 3.
    # AP = sum (R_k - R_{k-1}) * P_k over the three positives:
    #    (1/3)(1/1) + (1/3)(2/3) + (1/3)(3/5) = 15/45 + 10/45 + 9/45 = 34/45.
    # TPR first reaches >= 0.95 at 0.5 (3/3), where 2 of 3 negatives are above: FPR95 = 2/3.
    # AUROC: (pos, neg) pairs ranked right: 0.9 beats 3, 0.7 beats 2, 0.5 beats 1 -> 6/9.
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    labels = np.array([1, 0, 1, 0, 1, 0])
    m = PixelMetrics(0.0, 1.0, bins=1000)
    m.update(scores, labels)
    for res in (m.compute(), exact_pixel_metrics(scores, labels)):
        assert res['ap'] == pytest.approx(34 / 45, abs=1e-12)
        assert res['fpr95'] == pytest.approx(2 / 3, abs=1e-12)
        assert res['auroc'] == pytest.approx(2 / 3, abs=1e-12)


def test_hand_computed_ties():
    # Two tied pairs: {0.8: +, -} then {0.2: +, -}; each tie group is ONE threshold.
    # AP = (1/2)(1/2) + (1/2)(2/4) = 1/2. FPR95 reached only at 0.2 -> 2/2 = 1.
    # AUROC: pos 0.8 > neg 0.2 (1), two ties (1/2 each), pos 0.2 < neg 0.8 (0) -> 2/4.
    scores = np.array([0.8, 0.8, 0.2, 0.2])
    labels = np.array([1, 0, 1, 0])
    m = PixelMetrics(0.0, 1.0, bins=10)
    m.update(scores, labels)
    for res in (m.compute(), exact_pixel_metrics(scores, labels)):
        assert res['ap'] == pytest.approx(0.5, abs=1e-12)
        assert res['fpr95'] == pytest.approx(1.0, abs=1e-12)
        assert res['auroc'] == pytest.approx(0.5, abs=1e-12)


def test_void_pixels_ignored():
    rng = np.random.default_rng(4)
    scores, labels = _random_pixels(rng, 5000, void_frac=0.3)
    other = scores.copy()
    void = labels == 255
    other[void] = rng.normal(5.0, 3.0, void.sum())
    other[np.flatnonzero(void)[:10]] = np.nan  # NaN is tolerated where nothing is scored
    a, b = PixelMetrics(-4, 4, 500), PixelMetrics(-4, 4, 500)
    a.update(scores, labels)
    b.update(other, labels)
    assert a.compute() == b.compute()
    assert exact_pixel_metrics(scores, labels) == exact_pixel_metrics(other, labels)
    assert a.compute()['n_pos'] + a.compute()['n_neg'] == (~void).sum()


def test_invalid_inputs_raise():
    m = PixelMetrics(0.0, 1.0)
    with pytest.raises(ValueError, match='NaN'):
        m.update(np.array([0.1, np.nan]), np.array([0, 1]))
    with pytest.raises(ValueError, match='shape'):
        m.update(np.zeros((2, 3)), np.zeros((3, 2), np.uint8))
    with pytest.raises(ValueError, match='labels must be'):
        m.update(np.zeros(3), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match='NaN'):
        exact_pixel_metrics(np.array([np.nan]), np.array([1]))
    with pytest.raises(ValueError, match='lo < hi'):
        PixelMetrics(1.0, 1.0)
    with pytest.raises(ValueError, match='bins'):
        PixelMetrics(0.0, 1.0, bins=0)
    assert m.compute()['n_pos'] == 0  # failed updates leave the state untouched


@pytest.mark.parametrize('only', [0, 1])
def test_empty_class_gives_nan(only):
    scores, labels = np.array([0.2, 0.4, 0.6]), np.array([only, only, 255])
    m = PixelMetrics(0.0, 1.0, 100)
    m.update(scores, labels)
    for res in (m.compute(), exact_pixel_metrics(scores, labels)):
        assert all(math.isnan(res[k]) for k in KEYS)
        assert res['n_pos' if only else 'n_neg'] == 2
    assert all(math.isnan(PixelMetrics(0, 1).compute()[k]) for k in KEYS)


def test_streaming_chunks_equal_single_update():
    rng = np.random.default_rng(5)
    scores, labels = _random_pixels(rng, 30000)
    whole = PixelMetrics(-4, 5, 2000)
    whole.update(scores.reshape(100, 300), labels.reshape(100, 300))
    chunked = PixelMetrics(-4, 5, 2000)
    for part_s, part_y in zip(np.array_split(scores, 7), np.array_split(labels, 7), strict=True):
        chunked.update(part_s, part_y)
    assert chunked.compute() == whole.compute()


def test_merge_equals_single_accumulator():
    rng = np.random.default_rng(6)
    scores, labels = _random_pixels(rng, 30000)
    single = PixelMetrics(-4, 5, 2000)
    single.update(scores, labels)
    a, b = PixelMetrics(-4, 5, 2000), PixelMetrics(-4, 5, 2000)
    a.update(scores[:12345], labels[:12345])
    b.update(scores[12345:], labels[12345:])
    a.merge(b)
    assert a.compute() == single.compute()
    with pytest.raises(ValueError, match='merge'):
        a.merge(PixelMetrics(-4, 5, 1000))


def test_state_does_not_grow_and_reset_clears():
    rng = np.random.default_rng(7)
    m = PixelMetrics(-4, 5, 1000)
    before = _state_nbytes(m)
    for n in (10, 1000, 100000):
        m.update(*_random_pixels(rng, n))
        assert _state_nbytes(m) == before
    m.reset()
    assert (m.compute()['n_pos'], m.compute()['n_neg']) == (0, 0)


def test_out_of_range_scores_clip_into_edge_bins():
    labels = np.array([1, 0, 0, 1])
    inside = PixelMetrics(0.0, 1.0, 10)
    inside.update(np.array([0.99, 0.5, 0.01, 0.02]), labels)
    outside = PixelMetrics(0.0, 1.0, 10)
    outside.update(np.array([7.0, 0.5, -np.inf, -3.0]), labels)
    assert inside.compute() == outside.compute()


def test_accepts_torch_tensors():
    torch = pytest.importorskip('torch')
    rng = np.random.default_rng(8)
    scores, labels = _random_pixels(rng, 1000)
    a, b = PixelMetrics(-4, 5, 100), PixelMetrics(-4, 5, 100)
    a.update(scores, labels)
    b.update(torch.from_numpy(scores).requires_grad_(), torch.from_numpy(labels.astype(np.int64)))
    assert a.compute() == b.compute()


# ----------------------------------------------------------------------------- AUPRO


def _brute_aupro(score_maps, label_maps, max_fpr):
    """Threshold-by-threshold loop straight from the definition (tiny inputs only)."""
    from scipy import ndimage

    regions, negs = [], []
    for s, y in zip(score_maps, label_maps, strict=True):
        lab, n = ndimage.label(y == 1, structure=np.ones((3, 3)))
        regions += [s[lab == r] for r in range(1, n + 1)]
        negs.append(s[y == 0])
    negs = np.concatenate(negs)
    thresholds = np.unique(np.concatenate([negs, *regions]))[::-1]
    fpr = [0.0] + [float(np.mean(negs >= t)) for t in thresholds]
    pro = [0.0] + [float(np.mean([np.mean(r >= t) for r in regions])) for t in thresholds]
    area = 0.0
    for x0, y0, x1, y1 in zip(fpr[:-1], pro[:-1], fpr[1:], pro[1:], strict=True):
        if x0 >= max_fpr or x1 == x0:
            continue  # past the limit, or a vertical step (no area)
        x_end = min(x1, max_fpr)
        y_end = y0 + (y1 - y0) * (x_end - x0) / (x1 - x0)
        area += (x_end - x0) * (y0 + y_end) / 2
    return area / max_fpr


def _hand_maps():
    # One 2-pixel region (top-left, horizontal neighbours) scored 1.0 and 0.5; ten normal
    # pixels scored 0.9, 0.8, ..., 0.0. Curve (FPR, PRO) from the top threshold down:
    # (0, 0) -> (0, .5) @1.0 -> (.1, .5) ... (.4, .5) @0.6 -> (.5, 1) @0.5 -> ... -> (1, 1).
    s = np.array([[1.0, 0.5, 0.9, 0.8], [0.7, 0.6, 0.5, 0.4], [0.3, 0.2, 0.1, 0.0]])
    y = np.zeros((3, 4), np.uint8)
    y[0, :2] = 1
    return s, y


@pytest.mark.parametrize(
    ('max_fpr', 'want'),
    [
        (0.3, 0.5),  # flat PRO = .5 over [0, .3]: .15 / .3
        (0.45, 0.23125 / 0.45),  # .5 * .4 + trapezoid (.4..45, .5 -> .75) = .2 + .03125
        (1.0, 0.775),  # .5 * .4 + (.5 + 1) / 2 * .1 + 1 * .5
    ],
)
def test_aupro_hand_computed_and_max_fpr(max_fpr, want):
    s, y = _hand_maps()
    m = AuproMetric(-0.05, 1.05, bins=11, max_fpr=max_fpr)  # bin centres 0.0, 0.1, ..., 1.0
    m.update(s, y)
    assert m.n_regions == 1
    assert m.compute() == pytest.approx(want, abs=1e-12)
    assert exact_aupro([s], [y], max_fpr=max_fpr) == pytest.approx(want, abs=1e-12)


def test_aupro_perfect_map_is_one():
    rng = np.random.default_rng(9)
    _, labels = _blob_maps(rng, 3)
    scores = [np.where(y == 1, 0.9, 0.1) + 0.05 * rng.random(y.shape) for y in labels]
    m = AuproMetric(0.0, 1.0, bins=1000)
    for s, y in zip(scores, labels, strict=True):
        m.update(s, y)
    assert m.compute() == pytest.approx(1.0, abs=1e-12)
    assert exact_aupro(scores, labels) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize('seed', [10, 11])
def test_aupro_histogram_equals_exact_on_bin_centres(seed):
    rng = np.random.default_rng(seed)
    m = AuproMetric(-4.0, 4.0, bins=64)
    centres = -4.0 + (np.arange(64) + 0.5) * 8.0 / 64
    scores, labels = _blob_maps(rng, 6, quantize=centres)
    for s, y in zip(scores, labels, strict=True):
        m.update(s, y)
    assert m.compute() == pytest.approx(exact_aupro(scores, labels), abs=1e-9)


def test_aupro_histogram_close_to_exact_on_continuous_scores():
    rng = np.random.default_rng(12)
    scores, labels = _blob_maps(rng, 8)
    for max_fpr in (0.05, 0.3, 1.0):
        m = AuproMetric(-6.0, 7.0, bins=20000, max_fpr=max_fpr)
        for s, y in zip(scores, labels, strict=True):
            m.update(s, y)
        assert m.compute() == pytest.approx(exact_aupro(scores, labels, max_fpr), abs=1e-3)


def test_exact_aupro_matches_brute_force():
    rng = np.random.default_rng(13)
    scores, labels = _blob_maps(rng, 2, shape=(10, 12))
    scores = [np.round(s, 1) for s in scores]  # plenty of ties
    for max_fpr in (0.1, 0.3, 0.77):
        want = _brute_aupro(scores, labels, max_fpr)
        assert exact_aupro(scores, labels, max_fpr) == pytest.approx(want, abs=1e-6)


def test_aupro_regions_are_eight_connected():
    y = np.zeros((5, 5), np.uint8)
    y[1, 1] = y[2, 2] = 1  # diagonal neighbours: one region
    y[4, 0] = 1  # isolated: a second region
    m = AuproMetric(0.0, 1.0, 10)
    m.update(np.zeros((5, 5)), y)
    assert m.n_regions == 2


def test_aupro_streaming_merge_reset_and_nan():
    rng = np.random.default_rng(14)
    scores, labels = _blob_maps(rng, 6)
    single = AuproMetric(-4, 5, 500)
    a, b = AuproMetric(-4, 5, 500), AuproMetric(-4, 5, 500)
    before = _state_nbytes(single)
    for i, (s, y) in enumerate(zip(scores, labels, strict=True)):
        single.update(s, y)
        (a if i % 2 else b).update(s, y)
    assert _state_nbytes(single) == before
    a.merge(b)
    assert a.compute() == pytest.approx(single.compute(), abs=1e-12)
    with pytest.raises(ValueError, match='merge'):
        a.merge(AuproMetric(-4, 5, 500, max_fpr=0.1))
    a.reset()
    assert math.isnan(a.compute())
    normal_only = AuproMetric(0, 1, 10)
    normal_only.update(np.full((4, 4), 0.3), np.zeros((4, 4), np.uint8))
    assert math.isnan(normal_only.compute())
    anomaly_only = AuproMetric(0, 1, 10)
    anomaly_only.update(np.full((4, 4), 0.3), np.ones((4, 4), np.uint8))
    assert math.isnan(anomaly_only.compute())
    assert math.isnan(exact_aupro([np.zeros((2, 2))], [np.zeros((2, 2), np.uint8)]))


def test_aupro_invalid_inputs_raise():
    m = AuproMetric(0, 1, 10)
    with pytest.raises(ValueError, match='2-D'):
        m.update(np.zeros((2, 3, 3)), np.zeros((2, 3, 3), np.uint8))
    with pytest.raises(ValueError, match='shape'):
        m.update(np.zeros((3, 3)), np.zeros((3, 4), np.uint8))
    with pytest.raises(ValueError, match='NaN'):
        m.update(np.full((2, 2), np.nan), np.zeros((2, 2), np.uint8))
    with pytest.raises(ValueError, match='max_fpr'):
        AuproMetric(0, 1, 10, max_fpr=0.0)
