# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""The mask rules: fixed threshold, target false-positive rate, a contrario NFA, both."""

import numpy as np
import pytest
from scipy import ndimage
import torch

from flowclas_ros.core.config import Calibration, ModelConfig
from flowclas_ros.core.errors import ConfigError
from flowclas_ros.core.flowclas.scoring import calibrate, fit_calibration
from flowclas_ros.core.masks import (
    MaskRule,
    anomaly_mask,
    calibrated_fpr_thresholds,
    regions_meeting,
    rule_name,
)
from flowclas_ros.core.thresholds.fpr import LEVELS, fit_fpr_table, fpr_thresholds, resolution
from flowclas_ros.core.thresholds.nfa import fit_null


def _calibrated(raw, calibration):
    return calibrate(torch.from_numpy(raw), calibration).numpy()


def test_fixed_threshold_and_min_area():
    scores = np.zeros((20, 20), np.float32)
    scores[2:4, 2:4] = 0.9  # 4 pixels
    scores[10:16, 10:16] = 0.8  # 36 pixels
    cal = Calibration()

    def mask(**rule):
        return anomaly_mask(scores, None, MaskRule(**rule), cal, 1)

    out = mask()
    assert out.dtype == np.uint8
    assert set(np.unique(out)) == {0, 255}
    assert (out == 255).sum() == 40
    assert (mask(threshold=0.85) == 255).sum() == 4
    kept = mask(min_area=5)
    assert (kept == 255).sum() == 36
    assert kept[2, 2] == 0
    assert not mask(min_area=100).any()


def test_peak_fraction_trims_each_region_to_its_own_core_on_the_raw_scale():
    cal = Calibration(center=0.0, width=1.0)
    yy, xx = np.mgrid[:40, :80].astype(np.float64)
    # Raw scores: a tall cone (peak 20) and, far from it, a low one (peak 4), over a floor of -2.
    tall = 20 - np.hypot(yy - 20, xx - 20)
    low = 4 - 0.5 * np.hypot(yy - 20, xx - 60)
    raw = np.maximum(np.maximum(tall, low), -2.0)
    scores = _calibrated(raw, cal).astype(np.float32)

    def hits(fraction, mode='fixed'):
        rule = MaskRule(mode, threshold=0.5, peak_fraction=fraction)
        return anomaly_mask(scores, None, rule, cal, 1) > 0

    whole = hits(0.0)
    np.testing.assert_array_equal(whole, raw >= 0)
    half = hits(0.5)
    assert half.sum() < whole.sum()
    assert not (half & ~whole).any()
    # Each cone is cut at half its own height above the threshold, in raw units: the low one
    # is not dropped because the tall one is taller, and the tall one is cut where its raw
    # height halves (half-way on the saturating calibrated scale would keep raw >= 1.6).
    left, right = half[:, :40], half[:, 40:]
    np.testing.assert_array_equal(left, (raw >= 10)[:, :40])
    np.testing.assert_array_equal(right, (raw >= 2)[:, 40:])
    assert half[20, 20]  # the peaks stay
    assert half[20, 60]
    # A large frame's regions are found on a sampled copy: the same cores, up to a step.
    big = np.kron(scores, np.ones((12, 12), np.float32))  # 480 x 960: sampled every 3rd pixel
    rule = MaskRule(threshold=0.5, peak_fraction=0.5)
    trimmed = anomaly_mask(big, None, rule, cal, 1) > 0
    want = np.kron(half, np.ones((12, 12), bool))
    assert (trimmed & want).sum() / (trimmed | want).sum() > 0.97
    with pytest.raises(ConfigError, match='mask_peak_fraction'):
        MaskRule(peak_fraction=1.0)
    # A rule without its own fraction takes the model's.
    trimming = Calibration(center=0.0, width=1.0, peak_fraction=0.5)
    model_rule = anomaly_mask(scores, None, MaskRule(threshold=0.5), trimming, 1) > 0
    np.testing.assert_array_equal(model_rule, half)


def test_fpr_table_reads_back_the_rates_it_was_fitted_on():
    rng = np.random.default_rng(0)
    maps = rng.normal(0.0, 1.0, (400, 16, 16))
    table = fit_fpr_table(maps)
    assert table.n_pixels == maps.size
    assert table.n_images == 400
    assert resolution(table) == (1 / maps.size, 1 / 400)
    for target in (0.2, 0.05, 0.01):
        pixel, image = fpr_thresholds(table, target)
        assert abs((maps >= pixel).mean() - target) < 0.1 * target
        assert abs((maps.max(axis=(1, 2)) >= image).mean() - target) < 0.25 * target + 1 / 400
    # Thresholds rise as the rate falls; below the resolution they stop at the largest score.
    levels = [fpr_thresholds(table, f) for f in LEVELS]
    assert all(np.diff([p for p, _ in levels]) >= 0)
    assert all(np.diff([i for _, i in levels]) >= 0)
    assert fpr_thresholds(table, 1e-6) == pytest.approx((maps.max(), maps.max()))
    with pytest.raises(ValueError, match='target_fpr'):
        fpr_thresholds(table, 0.0)


def test_fpr_rule_flags_the_target_share_of_normal_frames_and_finds_a_planted_blob():
    rng = np.random.default_rng(1)
    cal = fit_calibration(rng.normal(1.0, 0.3, (300, 12, 12)))
    rule = MaskRule('fpr', target_fpr=0.02)
    fresh = rng.normal(1.0, 0.3, (1000, 12, 12))
    flagged = [anomaly_mask(_calibrated(m, cal), None, rule, cal, 1).any() for m in fresh]
    assert 0.005 <= np.mean(flagged) <= 0.045  # 2 % of 1000 frames, binomial spread
    blob = fresh[0].copy()
    blob[4:8, 4:8] += 3.0
    mask = anomaly_mask(_calibrated(blob, cal), None, rule, cal, 1) > 0
    assert mask[4:8, 4:8].all()
    assert mask.sum() <= 16 + 3  # and at most a few normal pixels
    pixel, frame = calibrated_fpr_thresholds(cal, 0.02)
    assert 0 < pixel < 1
    assert 0 < frame < 1
    assert frame > pixel  # a frame's maximum is rarer than one pixel


def test_fpr_rule_without_a_table_names_the_fix():
    with pytest.raises(ConfigError, match='flowclas-calibrate'):
        anomaly_mask(np.zeros((4, 4), np.float32), None, MaskRule('fpr'), Calibration(), 1)


def test_nfa_rule_upsamples_the_patch_grid_mask():
    rng = np.random.default_rng(2)
    dof = 32
    z = rng.standard_normal((dof, 16, 16))
    z[:, 4:10, 6:12] *= 3.0
    norms = (z**2).sum(axis=0)
    scores = np.zeros((64, 64), np.float32)  # ignored by nfa
    mask = anomaly_mask(scores, norms, MaskRule('nfa'), Calibration(), dof) > 0
    truth = np.zeros((64, 64), bool)
    truth[16:40, 24:48] = True
    assert (mask & truth).sum() / (mask | truth).sum() >= 0.8
    quiet = (rng.standard_normal((dof, 16, 16)) ** 2).sum(axis=0)
    assert not anomaly_mask(scores, quiet, MaskRule('nfa'), Calibration(), dof).any()
    with pytest.raises(ConfigError, match='latent norms'):
        anomaly_mask(scores, None, MaskRule('nfa'), Calibration(), dof)


@pytest.mark.parametrize('size', [64, 1280])
def test_fixed_nfa_keeps_the_fixed_regions_an_nfa_region_meets_whole(size):
    rng = np.random.default_rng(2)
    dof = 32
    z = rng.standard_normal((dof, 16, 16))
    z[:, 4:10, 6:12] *= 3.0  # the NFA region: image rows 16-40, columns 24-48 of 64
    norms = (z**2).sum(axis=0)
    scores = np.zeros((64, 64), np.float32)
    scores[30:50, 40:60] = 0.9  # meets the region and runs out of it
    scores[2:8, 2:8] = 0.9  # high, but no NFA region here
    scores[20:24, 26:30] = 0.3  # inside the region, under the threshold
    scale = size // 64
    scores = np.kron(scores, np.ones((scale, scale), np.float32))
    rule = MaskRule('fixed_nfa', threshold=0.5)
    mask = anomaly_mask(scores, norms, rule, Calibration(), dof) > 0
    expected = np.zeros((64, 64), bool)
    expected[30:50, 40:60] = True
    np.testing.assert_array_equal(mask, np.kron(expected, np.ones((scale, scale), bool)))
    quiet = (rng.standard_normal((dof, 16, 16)) ** 2).sum(axis=0)
    assert not anomaly_mask(scores, quiet, rule, Calibration(), dof).any()
    assert rule_name(rule) == 'fixed_nfa'
    assert rule_name(MaskRule('fixed_nfa', nfa_null='fitted')) == 'fixed_nfa_fitted'
    with pytest.raises(ConfigError, match='fixed_nfa needs the latent norms'):
        anomaly_mask(scores, None, rule, Calibration(), dof)


def test_regions_meeting_a_grid_of_any_size():
    hits = np.zeros((40, 40), bool)
    hits[0:10, 0:10] = hits[25:35, 25:35] = True
    grid = np.zeros((4, 4), bool)
    grid[3, 3] = True  # the bottom-right tenth of the frame
    np.testing.assert_array_equal(regions_meeting(hits, grid), hits & (np.arange(40) >= 25))
    assert not regions_meeting(hits, np.zeros((4, 4), bool)).any()


def test_fitted_null_recovers_its_parameters():
    rng = np.random.default_rng(5)
    null = fit_null(8.0 * rng.chisquare(32, (50, 16, 16)))
    assert null.dof == pytest.approx(32, rel=0.05)
    assert null.scale == pytest.approx(8.0, rel=0.05)


def test_fitted_null_refuses_norms_that_do_not_vary():
    with pytest.raises(ValueError, match='vary'):
        fit_null(np.full((4, 8, 8), 432.0))


def test_fitted_null_removes_the_false_alarms_of_correlated_latents():
    # Like a trained latent on normal frames: channels in groups (32 independent fields over
    # C = 256), smooth over neighbouring patches, and a frame-wide gain that varies.
    rng = np.random.default_rng(4)
    channels = 256

    def norms(n):
        w = ndimage.gaussian_filter(rng.standard_normal((n, 32, 16, 16)), (0, 0, 1, 1))
        w /= w.std(axis=(2, 3), keepdims=True)
        return 8 * (w**2).sum(axis=1) * rng.uniform(0.7, 1.3, (n, 1, 1))

    cal = fit_calibration(rng.normal(0, 1, (8, 16, 16)), norms(50))
    assert cal.latent_null.dof < 32  # fewer effective degrees of freedom than groups, and C
    scores = np.zeros((16, 16), np.float32)
    chi2, fitted = MaskRule('nfa'), MaskRule('nfa', nfa_null='fitted')
    frames = norms(40)
    false_chi2 = [anomaly_mask(scores, q, chi2, cal, channels).any() for q in frames]
    false_fitted = [anomaly_mask(scores, q, fitted, cal, channels).any() for q in frames]
    assert sum(false_chi2) >= 5  # the C-dof null is too narrow for them
    assert sum(false_fitted) == 0
    odd = frames[0].copy()
    odd[4:9, 4:9] *= 10.0
    found = anomaly_mask(scores, odd, fitted, cal, channels) > 0
    truth = np.zeros_like(found)
    truth[4:9, 4:9] = True
    assert (found & truth).sum() / (found | truth).sum() >= 0.6
    with pytest.raises(ConfigError, match='flowclas-calibrate'):
        anomaly_mask(scores, odd, fitted, Calibration(), channels)


@pytest.mark.parametrize(
    ('rule', 'message'),
    [
        ({'mode': 'otsu'}, 'mask_mode'),
        ({'threshold': 1.5}, 'threshold'),
        ({'target_fpr': 0.0}, 'target_fpr'),
        ({'min_area': -1}, 'mask_min_area'),
        ({'mode': 'nfa', 'nfa_null': 'gamma'}, 'nfa_null'),
    ],
)
def test_bad_rules_are_refused(rule, message):
    with pytest.raises(ConfigError, match=message):
        MaskRule(**rule)


def test_the_table_survives_the_model_config_file(tmp_path):
    config = ModelConfig()
    rng = np.random.default_rng(3)
    config.calibration = fit_calibration(
        rng.normal(0, 1, (20, 8, 8)), rng.chisquare(9, (20, 8, 8))
    )
    config.save(tmp_path / 'config.json')
    loaded = ModelConfig.load(tmp_path / 'config.json').calibration
    assert loaded == config.calibration
    assert loaded.latent_null.dof == config.calibration.latent_null.dof > 0
    assert fpr_thresholds(loaded.fpr, 0.01) == fpr_thresholds(config.calibration.fpr, 0.01)
