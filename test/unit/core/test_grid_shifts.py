# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Scoring on four grids shifted by a quarter cell, interleaved into one at half the stride."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from flowclas_ros.core.config import BackboneConfig, ModelConfig
from flowclas_ros.core.errors import ConfigError
from flowclas_ros.core.flowclas.model import (
    QUARTER_SHIFTS,
    build_model,
    choose_grid_shifts,
    interleave,
    save_model,
    shift,
    upsample,
)
from flowclas_ros.core.inference import Detector


def test_interleaved_cells_sit_where_bilinear_upsampling_expects_them():
    # A frame whose value is each pixel's own (row, column): a stride-32 cell's mean is the
    # position its centre came from, so the interleaved grid must read the centres of a
    # stride-16 grid, (k + 0.5) * 16 - 0.5, away from the replicated border.
    h, w, stride = 128, 192, 32
    rows, cols = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing='ij')
    frame = torch.stack([rows, cols])[None]
    q = stride // 4
    shifted = torch.cat([shift(frame, dy * q, dx * q) for dy, dx in QUARTER_SHIFTS])
    cells = F.avg_pool2d(shifted, stride)
    fine_rows, fine_cols = interleave(cells[:, 0]), interleave(cells[:, 1])
    assert fine_rows.shape == (1, h // 16, w // 16)
    centres_r = torch.arange(h // 16).float() * 16 + 7.5
    centres_c = torch.arange(w // 16).float() * 16 + 7.5
    inner = (slice(None), slice(1, -1), slice(1, -1))
    torch.testing.assert_close(
        fine_rows[inner], centres_r[:, None].expand(-1, w // 16)[1:-1, 1:-1][None]
    )
    torch.testing.assert_close(
        fine_cols[inner], centres_c[None].expand(h // 16, -1)[1:-1, 1:-1][None]
    )


@pytest.fixture(scope='module')
def shifted_model():
    config = ModelConfig(backbone=BackboneConfig(), input_size=[96, 128], grid_shifts=2)
    return build_model(config).eval()


def test_maps_interleave_the_four_shifted_grids(shifted_model):
    x = torch.rand(2, 3, 96, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        scores, norms = shifted_model.maps(x)
        q = shifted_model.backbone.stride // 4
        h, w = 96 // (2 * q), 128 // (2 * q)  # twice the encoder's grid
        assert scores.shape == norms.shape == (2, h, w)
        for i, (dy, dx) in enumerate(QUARTER_SHIFTS):
            one, one_norms = shifted_model._grid_maps(shift(x, dy * q, dx * q))
            r, c = i // 2, i % 2
            torch.testing.assert_close(scores[:, r::2, c::2], one)
            torch.testing.assert_close(norms[:, r::2, c::2], one_norms)
        torch.testing.assert_close(shifted_model(x), upsample(scores, (96, 128)))


def test_a_loaded_model_takes_the_setting_without_retraining(tmp_path):
    config = ModelConfig(backbone=BackboneConfig(), input_size=[96, 128])
    save_model(build_model(config), tmp_path / 'm')
    frame = np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    one = Detector.load(tmp_path / 'm')
    two = Detector.load(tmp_path / 'm', grid_shifts=2)
    assert two.model.config.grid_shifts == 2
    h, w = one.detect(frame)[1].shape
    scores, norms = two.detect(frame)
    assert norms.shape == (2 * h, 2 * w)
    assert scores.shape == (96, 128)
    assert not np.allclose(scores, one(frame))


def test_bad_settings_are_refused():
    config = ModelConfig(backbone=BackboneConfig())
    with pytest.raises(ConfigError, match='grid_shifts'):
        choose_grid_shifts(config, 3)
    config.refine = 'cascade'
    with pytest.raises(ConfigError, match='cascade'):
        choose_grid_shifts(config, 2)
    data = ModelConfig(backbone=BackboneConfig()).to_dict() | {'grid_shifts': 4}
    with pytest.raises(ConfigError, match='grid_shifts'):
        ModelConfig.from_dict(data)
