# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Calibration and smoothing of score maps."""

import numpy as np
import torch

from flowclas_ros.core.scoring import calibrate, fit_calibration, smooth


def test_calibration_maps_the_normal_99th_percentile_to_one_half():
    normal = np.random.default_rng(0).normal(2.0, 0.5, 100_000)
    cal = fit_calibration(normal)
    assert abs(cal.center - np.quantile(normal, 0.99)) < 1e-9
    out = calibrate(torch.tensor([cal.center, np.median(normal), cal.center + 10]), cal)
    assert abs(float(out[0]) - 0.5) < 1e-6
    assert abs(float(out[1]) - 1 / (1 + np.exp(3))) < 1e-3  # median sits 3 widths below
    assert float(out[2]) > 0.99


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
