# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
import pytest
import torch

from flowclas_ros.core.backbones import build_backbone
from flowclas_ros.core.backbones.efficientnet import EFFICIENTNET_NAMES, _weights_path
from flowclas_ros.core.errors import ConfigError, ModelFileError


def test_default_backbone_uses_the_real_imagenet_weights():
    model = build_backbone('efficientnet_lite0')
    assert model.stride == 16
    assert model.out_dim == 112 + 320
    state = torch.load(_weights_path('efficientnet_lite0'), weights_only=True)
    torch.testing.assert_close(model.stem.conv.weight, state['_conv_stem.weight'])
    assert not any(p.requires_grad for p in model.parameters())
    assert not model.training


@pytest.mark.parametrize(('taps', 'channels'), [((8, 16), 40 + 112), ((4,), 24)])
def test_taps_choose_strides_and_channels(taps, channels):
    model = build_backbone('efficientnet_lite0', layers=taps)
    x = torch.rand(2, 3, 96, 64)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, channels, 96 // taps[0], 64 // taps[0])
    assert torch.isfinite(y).all()


def test_same_padding_matches_tensorflow_convention():
    # 'SAME' with stride 2 on an even input pads one pixel at the bottom/right only: a
    # one-hot input at the top-left corner must reach the first output of the stem.
    model = build_backbone('efficientnet_lite0', layers=(4,))
    conv = model.stem.conv
    x = torch.zeros(1, 3, 8, 8)
    x[0, :, 0, 0] = 1
    padded = torch.nn.functional.pad(x, [0, 1, 0, 1])
    expected = torch.nn.functional.conv2d(padded, conv.weight, stride=2)
    from flowclas_ros.core.backbones.efficientnet import _same_pad

    torch.testing.assert_close(conv(_same_pad(x, 3, 2)), expected)


@pytest.mark.parametrize('name', EFFICIENTNET_NAMES)
def test_all_variants_load(name):
    model = build_backbone(name, layers=(8, 16, 32))
    with torch.no_grad():
        assert model(torch.rand(1, 3, 64, 64)).shape[1] == model.out_dim


def test_wrong_checkpoint_is_a_clear_error(tmp_path):
    state = torch.load(_weights_path('efficientnet_lite0'), weights_only=True)
    del state['_blocks.3._project_conv.weight']
    path = tmp_path / 'broken.pth'
    torch.save(state, path)
    with pytest.raises(ModelFileError, match='EfficientNet-Lite'):
        build_backbone('efficientnet_lite0', weights=path)


def test_bad_tap_and_unknown_name():
    with pytest.raises(ConfigError, match='taps'):
        build_backbone('efficientnet_lite0', layers=(12,))
    with pytest.raises(ConfigError, match='unknown backbone'):
        build_backbone('efficientnet_lite7')
