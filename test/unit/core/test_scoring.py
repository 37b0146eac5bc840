# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Calibration and smoothing of score maps."""

import numpy as np
import torch

from flowclas_ros.core.flowclas.scoring import (
    calibrate,
    fit_calibration,
    frame_median,
    smooth,
    uncalibrate,
)


def test_calibration_maps_the_normal_99th_percentile_to_one_half():
    normal = np.random.default_rng(0).normal(2.0, 0.5, (100, 20, 50))
    cal = fit_calibration(normal)
    assert abs(cal.center - np.quantile(normal, 0.99)) < 1e-9
    out = calibrate(torch.tensor([cal.center, np.median(normal), cal.center + 10]), cal)
    assert abs(float(out[0]) - 0.5) < 1e-6
    assert abs(float(out[1]) - 1 / (1 + np.exp(3))) < 1e-3  # median sits 3 widths below
    assert float(out[2]) > 0.99


def test_calibrated_float32_scores_keep_their_order_and_invert():
    cal = fit_calibration(np.random.default_rng(1).normal(0.0, 1.0, (10, 10, 100)))
    z = np.concatenate([-np.geomspace(30, 1e-3, 200), [0.0], np.geomspace(1e-3, 1e3, 400)])
    raw = cal.center + cal.width * z
    out = calibrate(torch.from_numpy(raw).float(), cal).numpy()
    assert out.dtype == np.float32
    assert np.all(np.diff(out) > 0)  # strictly increasing: no ties at 0 or 1, even at z = 1000
    assert float(out[0]) > 0
    assert float(out[-1]) < 1
    back = uncalibrate(out, cal)
    assert np.allclose(back, raw, rtol=5e-3, atol=1e-3 * cal.width)  # float32 steps near 1
    # Value and slope are continuous at the centre.
    eps = 1e-4
    near = calibrate(torch.tensor([cal.center - eps, cal.center + eps], dtype=torch.float64), cal)
    assert abs(float(near[1] - near[0]) / (2 * eps / cal.width) - 0.25) < 1e-3


def test_smoothing_keeps_mass_and_constants_and_spreads_a_spike():
    spike = torch.zeros(1, 15, 15)
    spike[0, 7, 7] = 1.0
    out = smooth(spike, 1.0)
    assert abs(float(out.sum()) - 1.0) < 1e-6
    assert float(out[0, 7, 7]) == float(out.max())
    assert torch.allclose(out[0], out[0].T)
    assert abs(float(out[0, 7, 8] / out[0, 7, 7]) - np.exp(-0.5)) < 1e-5
    constant = torch.full((2, 4, 6), 3.0)
    assert torch.allclose(smooth(constant, 2.0), constant)
    assert torch.equal(smooth(spike, 0.0), spike)


def test_frame_median_is_each_maps_lower_median():
    maps = torch.randn(3, 7, 10, generator=torch.Generator().manual_seed(0))
    maps[1, :2] += 50.0  # an anomaly on a fifth of the frame leaves its median near the rest's
    want = maps.flatten(1).median(dim=1).values  # torch's median is the lower one too
    assert torch.equal(frame_median(maps)[:, 0, 0], want)
    assert frame_median(maps).shape == (3, 1, 1)
    assert float(frame_median(maps)[1]) < 1.5


def test_a_centred_model_ranks_within_a_frame_as_before_and_shifts_whole_scenes():
    from flowclas_ros.core.config import BackboneConfig, ModelConfig
    from flowclas_ros.core.flowclas.model import build_model

    plain = build_model(ModelConfig(backbone=BackboneConfig(), input_size=[64, 96]))
    centred = build_model(
        ModelConfig(backbone=BackboneConfig(), input_size=[64, 96], center_per_frame=True)
    )
    centred.flow.load_state_dict(plain.flow.state_dict())
    feats = torch.randn(2, plain.channels, 4, 6, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, _ = plain.patch_maps(feats)
        b, _ = centred.patch_maps(feats)
        shifted, _ = centred.patch_maps(feats * 3.0)  # a whole scene unlike training
    torch.testing.assert_close(b, a - a.flatten(1).median(dim=1).values[:, None, None])
    assert torch.equal(b.flatten(1).argsort(dim=1), a.flatten(1).argsort(dim=1))
    assert float(frame_median(shifted).abs().max()) == 0.0
