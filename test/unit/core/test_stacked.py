# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Two encoders stacked on one grid: shapes, the composition itself, config round trip."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from flowclas_ros.core.backbones import build_backbone
from flowclas_ros.core.backbones.dinov2 import build_dinov2, save_official
from flowclas_ros.core.backbones.stacked import Stacked
from flowclas_ros.core.config import BackboneConfig, ModelConfig
from flowclas_ros.core.errors import ConfigError
from flowclas_ros.core.flowclas.model import build_model, load_model, save_model


@pytest.fixture(scope='module')
def vit() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_dinov2('dinov2_vits14', None, (1, 3)).freeze()


@pytest.mark.parametrize(('taps', 'pool'), [((32,), 2), ((16, 32), 1)])
def test_extra_features_are_pooled_onto_the_primary_grid(vit, taps, pool) -> None:
    cnn = build_backbone('efficientnet_lite0', layers=taps)
    stacked = Stacked(cnn, vit)
    images = torch.rand(2, 3, 96, 160, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got = stacked(images)
        first = cnn(images)
        h, w = first.shape[-2:]
        resized = F.interpolate(images, size=(h * 14 * pool, w * 14 * pool), mode='bilinear')
        second = F.avg_pool2d(vit(resized), pool)
    assert stacked.pool == pool
    assert stacked.stride == taps[0]
    assert stacked.size_multiple == 32
    assert got.shape == (2, cnn.out_dim + 2 * 384, 96 // taps[0], 160 // taps[0])
    assert stacked.out_dim == got.shape[1]
    torch.testing.assert_close(got, torch.cat([first, second], 1))


def test_a_stacked_model_round_trips_through_its_directory(vit, tmp_path) -> None:
    weights = tmp_path / 'vit.pth'
    save_official(vit, weights)
    config = ModelConfig(input_size=[64, 96])
    config.backbone.extra = BackboneConfig('dinov2_vits14', str(weights), [1, 3])
    model = build_model(config).eval()
    save_model(model, tmp_path / 'model')
    loaded = load_model(tmp_path / 'model')
    assert loaded.config.backbone.extra == config.backbone.extra
    assert loaded.channels == 320 + 2 * 384
    images = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), model(images))


def test_one_extra_encoder_at_most() -> None:
    data = ModelConfig().to_dict()
    data['backbone']['extra'] = {'name': 'dinov2_vits14', 'extra': {'name': 'dinov2_vits14'}}
    with pytest.raises(ConfigError, match='backbone.extra.extra'):
        ModelConfig.from_dict(data)
    data['backbone']['extra'] = {'name': 'dinov2_vits14', 'layers': 'all'}
    with pytest.raises(ConfigError, match="'backbone.extra.layers' has the wrong type"):
        ModelConfig.from_dict(data)
