# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""The single-image inference entry point and the mask it feeds."""

import numpy as np
import pytest
import torch

from flowclas_ros.core.config import Calibration, ModelConfig
from flowclas_ros.core.data.images import to_batch
from flowclas_ros.core.errors import ConfigError, InputError
from flowclas_ros.core.flowclas.model import build_model, load_model, save_model
from flowclas_ros.core.flowclas.scoring import calibrate
from flowclas_ros.core.inference import Detector
from flowclas_ros.core.masks import MaskRule, threshold_hits
from flowclas_ros.core.visualize import heatmap, overlay


@pytest.fixture(scope='module')
def model():
    config = ModelConfig(input_size=[64, 64])
    config.calibration = Calibration(center=1.5, width=0.2)
    return build_model(config).eval()


def _image(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_scores_match_the_model_at_the_frame_size(model):
    rgb = _image(48, 80)
    scores = Detector(model)(rgb)
    assert scores.shape == (48, 80)
    assert scores.dtype == np.float32
    with torch.no_grad():
        raw = torch.nn.functional.interpolate(
            model.patch_maps(model.features(to_batch([rgb], (64, 64))))[0][:, None],
            size=(48, 80),
            mode='bilinear',
            align_corners=False,
        )[0, 0]
        expected = calibrate(raw, model.config.calibration).numpy()
    np.testing.assert_allclose(scores, expected, atol=1e-6)
    assert scores.min() >= 0.0
    assert scores.max() <= 1.0


def test_a_frame_at_the_model_size_equals_forward(model):
    rgb = _image(64, 64, seed=1)
    with torch.no_grad():
        raw = model(to_batch([rgb], (64, 64)))
    expected = calibrate(raw, model.config.calibration)[0].numpy()
    np.testing.assert_allclose(Detector(model)(rgb), expected, atol=1e-6)


def test_output_scale(model):
    assert Detector(model, output_scale=0.5)(_image(48, 80)).shape == (24, 40)


def test_keep_aspect_keeps_pixel_count_and_aspect():
    config = ModelConfig(input_size=[320, 320])
    detector = Detector(build_model(config), size_policy='keep_aspect')
    h, w = detector.network_size(480, 640)
    assert h % 32 == 0
    assert w % 32 == 0
    assert abs(w / h - 640 / 480) < 0.15
    assert abs(h * w / 320**2 - 1) < 0.15
    assert Detector(build_model(config), size_policy='fixed').network_size(480, 640) == (320, 320)


def test_native_keeps_the_pixel_scale_and_only_shrinks():
    config = ModelConfig(input_size=[320, 320], size_policy='native')
    detector = Detector(build_model(config))  # 'model': the config's policy
    assert detector.network_size(230, 110) == (224, 96)  # small frames keep their scale
    h, w = detector.network_size(480, 640)  # large ones shrink to the pixel budget
    assert abs(w / h - 640 / 480) < 0.15
    assert h * w <= 320**2 * 1.15
    fixed = ModelConfig(input_size=[320, 320], size_policy='fixed')
    assert Detector(build_model(fixed)).network_size(230, 110) == (320, 320)


def test_bad_settings_and_frames(model):
    with pytest.raises(ConfigError, match='size policy'):
        Detector(model, size_policy='crop')
    with pytest.raises(ConfigError, match='output_scale'):
        Detector(model, output_scale=0)
    detector = Detector(model)
    with pytest.raises(InputError) as info:
        detector(np.zeros((0, 5, 3), np.uint8))
    assert info.value.reason == 'empty_image'
    with pytest.raises(InputError) as info:
        detector(np.zeros((5, 5), np.uint8))
    assert info.value.reason == 'bad_image'


def test_nan_producing_weights_are_caught(tmp_path, model):
    save_model(model, tmp_path / 'm')
    broken = load_model(tmp_path / 'm')
    with torch.no_grad():
        next(broken.flow.parameters()).fill_(float('nan'))
    with pytest.raises(InputError) as info:
        Detector(broken)(_image(32, 32))
    assert info.value.reason == 'non_finite_scores'


def test_detect_gives_the_standardized_latent_norms(model):
    rgb = _image(48, 80, seed=2)
    scores, norms = Detector(model).detect(rgb)
    np.testing.assert_array_equal(scores, Detector(model)(rgb))
    with torch.no_grad():
        _, z = model.flow.log_prob(model.features(to_batch([rgb], (64, 64))))
        want = model.flow.base.standardize(z).square().sum(1)[0].double().numpy()
    assert norms.dtype == np.float64
    grid = 64 // model.backbone.stride
    assert norms.shape == want.shape == (grid, grid)  # the patch grid, not the frame
    np.testing.assert_allclose(norms, want, rtol=1e-6)


@pytest.mark.parametrize('scale', [1.0, 0.5])
@pytest.mark.parametrize(
    'rule',
    [
        MaskRule(threshold=0.4),
        MaskRule(threshold=0.4, min_area=9),
        MaskRule(threshold=0.4, peak_fraction=0.5),
    ],
    ids=['fixed', 'area', 'peak'],
)
def test_render_gives_what_the_numpy_path_gives(model, scale, rule):
    detector = Detector(model, output_scale=scale)
    rgb = _image(48, 80, seed=2)[:, :, ::-1]  # a bgr8 frame viewed as RGB: negative strides
    out = detector.render(rgb, {'score', 'mask', 'heatmap', 'overlay'}, rule, (0.2, 0.8))
    scores = detector(rgb)
    np.testing.assert_array_equal(out['score'], scores)
    np.testing.assert_array_equal(out['mask'], detector.mask(scores, None, rule))
    colour = heatmap(scores, 0.2, 0.8)
    np.testing.assert_array_equal(out['heatmap'], colour)
    assert out['overlay'].shape == (*scores.shape, 3)
    if scale == 1.0:
        np.testing.assert_array_equal(out['overlay'], overlay(rgb, colour))
    assert set(detector.render(rgb, {'mask'}, rule)) == {'mask'}


def test_tensor_and_array_colours_and_thresholds_are_the_same_bytes():
    rng = np.random.default_rng(0)
    scores = rng.normal(0.5, 0.4, (30, 40)).astype(np.float32)
    scores[0, :4] = [np.nan, np.inf, -np.inf, 0.5]
    image = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    tensor = torch.from_numpy(scores.copy())
    np.testing.assert_array_equal(heatmap(tensor, 0.1, 0.9).numpy(), heatmap(scores, 0.1, 0.9))
    colour = heatmap(scores)
    blended = overlay(torch.from_numpy(image), torch.from_numpy(colour), 0.3).numpy()
    np.testing.assert_array_equal(blended, overlay(image, colour, 0.3))
    calibration = Calibration()
    np.testing.assert_array_equal(
        threshold_hits(tensor, MaskRule(threshold=0.6), calibration).numpy(),
        threshold_hits(scores, MaskRule(threshold=0.6), calibration),
    )
