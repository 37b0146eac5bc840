# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Refinement: the cascade (its arithmetic, its config, a model that carries a fine level) and
region consistency over segments (the official rule, labels of any size, superpixels)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from safetensors.torch import load_file, save_file
import torch

from flowclas_ros.core.config import BackboneConfig, FineConfig, LevelStats, ModelConfig
from flowclas_ros.core.data.imagemsg import label_image
from flowclas_ros.core.data.images import to_batch
from flowclas_ros.core.errors import ConfigError, InputError, ModelFileError
from flowclas_ros.core.flowclas.model import (
    WEIGHTS_FILE,
    build_model,
    load_model,
    save_model,
    shared_fine_stride,
    trained_state,
    upsample,
)
from flowclas_ros.core.flowclas.refine import (
    MemoryBank,
    cascade,
    choose_refine,
    fit_stats,
    region_consistency,
    segmenter,
    standardize,
    superpixels,
    with_segments,
)
from flowclas_ros.core.flowclas.scoring import calibrate
from flowclas_ros.core.inference import Detector


def smooth_image(h, w, seed=0):
    """Smooth colour ramps with a little noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 / w, y * 255 / h, (x + y) * 127 / (h + w)], -1)
    return np.clip(base + rng.integers(-8, 9, base.shape), 0, 255).astype(np.uint8)


def test_cascade_adds_positive_fine_detail_only_above_the_gate():
    # Coarse [1, 3] on a 1x2 grid upsamples bilinearly to [1, 1.5, 2.5, 3] on 1x4.
    coarse = torch.tensor([[[1.0, 3.0]]])
    fine = torch.tensor([[[5.0, 5.0, 5.0, -4.0]]])
    out = cascade(coarse, fine, gate=2.0)
    np.testing.assert_allclose(out.numpy(), [[[1.0, 1.5, 7.5, 3.0]]])
    # A gate above every coarse value leaves the coarse map alone.
    np.testing.assert_allclose(cascade(coarse, fine, gate=9.0).numpy(), [[[1.0, 1.5, 2.5, 3.0]]])
    out = cascade(coarse, fine, 2.0, weight=2.0)
    np.testing.assert_allclose(out.numpy(), [[[1.0, 1.5, 12.5, 3.0]]])


def test_a_memory_bank_scores_each_pooled_cell_by_its_nearest_bank_row():
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 4, 5, 6, generator=gen)
    bank = MemoryBank(channels=4, size=7)
    cells = bank.embed(feats)
    assert cells.shape == (2, 30, 4)
    # 3 x 3 means with zero padding: an interior cell averages its 9 neighbours.
    torch.testing.assert_close(cells[0, 1 * 6 + 1], feats[0, :, :3, :3].mean((1, 2)))
    bank.fill(torch.randn(50, 4, generator=gen), gen)
    assert bank.bank.shape == (7, 4)
    bank.CHUNK = 3  # several chunks, the last one short
    expected = torch.cdist(cells.flatten(0, 1), bank.bank).min(1).values.reshape(2, 5, 6)
    torch.testing.assert_close(bank(feats), expected, rtol=0, atol=1e-5)
    with torch.autocast('cpu', dtype=torch.bfloat16):  # distances stay float32
        got = bank(feats)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    where = torch.rand(2, 5, 6, generator=gen) > 0.7  # only these cells are searched
    got = bank(feats, where)
    torch.testing.assert_close(got[where], expected[where], rtol=0, atol=1e-5)
    assert (got[~where] == 0).all()
    assert (bank(feats, torch.zeros_like(where)) == 0).all()
    # A cell of the bank is at distance 0; fewer cells than rows keep them all.
    bank.fill(cells[1, :3], gen)
    assert bank.bank.shape == (3, 4)
    assert bank(feats)[1, 0, :3].abs().max() < 1e-3


def test_level_stats_put_the_median_at_zero_and_the_99th_percentile_at_2_33():
    values = np.arange(1001, dtype=np.float64)  # median 500, 99th percentile 990
    stats = fit_stats([values[:400].reshape(20, 20), values[400:]])
    assert stats.center == pytest.approx(500.0)
    z = standardize(torch.tensor([500.0, 990.0], dtype=torch.float64), stats)
    np.testing.assert_allclose(z.numpy(), [0.0, 2.326], atol=1e-9)


@pytest.mark.parametrize(
    ('changes', 'message'),
    [
        ({'refine': 'sharpen'}, "'refine' must be one of"),
        ({'refine': 'cascade'}, "'fine' must be set"),
        ({'fine': {'flow': {'steps': 0}}}, "'fine.flow.steps'"),
        ({'fine': {'fine': {'center': 0.0, 'width': 0.0}}}, "'fine.coarse.width'"),
        ({'fine': {'density': 'gaussian'}}, "'fine.density' must be one of"),
        ({'fine': {'bank_size': 0}}, "'fine.bank_size'"),
        ({'fine': {'weight': 0.0}}, "'fine.weight'"),
    ],
)
def test_bad_refine_settings_are_named(changes, message):
    data = ModelConfig().to_dict() | changes
    with pytest.raises(ConfigError, match=message):
        ModelConfig.from_dict(data)


def test_a_fine_level_saved_before_its_own_smoothing_keeps_the_coarse_levels():
    config = ModelConfig(refine='cascade', fine=FineConfig(), score_smoothing=1.5)
    assert ModelConfig.from_dict(config.to_dict()).fine.smoothing == FineConfig().smoothing
    old = config.to_dict()
    del old['fine']['smoothing']
    assert ModelConfig.from_dict(old).fine.smoothing == 1.5  # what its stats were fitted on
    with pytest.raises(ConfigError, match="'fine.smoothing'"):
        ModelConfig.from_dict(config.to_dict() | {'fine': old['fine'] | {'smoothing': -1.0}})


def test_a_fine_level_saved_before_the_bank_keeps_its_flow_at_weight_1():
    config = ModelConfig(refine='cascade', fine=FineConfig())
    assert ModelConfig.from_dict(config.to_dict()).fine.density == 'knn'
    old = config.to_dict()
    del old['fine']['density'], old['fine']['weight']
    fine = ModelConfig.from_dict(old).fine
    assert (fine.density, fine.weight) == ('flow', 1.0)


def test_choose_refine_refuses_a_cascade_without_a_fine_level():
    config = ModelConfig()
    choose_refine(config, 'model')
    choose_refine(config, 'none')
    with pytest.raises(ConfigError, match='trained with a fine level'):
        choose_refine(config, 'cascade')
    with pytest.raises(ConfigError, match='unknown refine'):
        choose_refine(config, 'slic')


def _fine_model(refine='cascade', density='knn'):
    config = ModelConfig(
        input_size=[64, 64],
        backbone=BackboneConfig(),
        refine=refine,
        fine=FineConfig(density=density, bank_size=64),
    )
    config.fine.coarse = LevelStats(center=0.5, width=0.2)
    config.fine.fine = LevelStats(center=1.0, width=0.5)
    model = build_model(config).eval()
    if density == 'knn':  # a bank of cells unlike zeros, as a trained one is
        model.fine.density.bank.normal_(generator=torch.Generator().manual_seed(0))
    return model


def test_a_cascade_scores_on_the_fine_grid_and_keeps_the_coarse_map_below_the_gate():
    model = _fine_model()
    batch = to_batch([smooth_image(64, 64)], (64, 64))
    with torch.no_grad():
        refined, norms = model.maps(batch)
        coarse, coarse_norms = model.patch_maps(model.features(batch))
    assert refined.shape[-2:] == (8, 8)  # EfficientNet-Lite0 stride 8 on 64 px
    assert norms.shape[-2:] == coarse.shape[-2:] == (4, 4)  # default taps end at stride 16
    torch.testing.assert_close(norms, coarse_norms)
    z = upsample(standardize(coarse, model.config.fine.coarse), (8, 8))
    below = z <= model.config.fine.gate
    torch.testing.assert_close(refined[below], z[below])
    assert (refined[~below] >= z[~below]).all()
    model.config.refine = 'none'
    with torch.no_grad():
        unrefined, _ = model.maps(batch)
    torch.testing.assert_close(unrefined, standardize(coarse, model.config.fine.coarse))


def test_the_bank_searches_only_the_gated_cells_and_their_smoothing_neighbours():
    model = _fine_model()
    batch = to_batch([smooth_image(96, 128, seed=4)], (96, 128))
    with torch.no_grad():
        coarse, _ = model.patch_maps(model.features(batch))
        fine_feats = model.fine.features(batch)
        c = model.config.fine
        # About a third of the coarse cells pass the gate.
        c.coarse = LevelStats(center=float(coarse.quantile(0.7)) - c.gate, width=1.0)
        z = standardize(coarse, c.coarse)
        every_cell = cascade(z, standardize(model.fine.scores(fine_feats), c.fine), c.gate, 2.0)
        gated = model.refined(coarse, fine_feats)
    passed = upsample(z, gated.shape[-2:]) > c.gate
    assert 0 < passed.float().mean() < 0.9
    torch.testing.assert_close(gated, every_cell, rtol=1e-5, atol=1e-5)


def test_a_fine_level_on_the_coarse_trunk_shares_its_pass_and_scores_the_same():
    model = _fine_model()
    assert model.fine_stride == 8  # Lite0 at stride 8 is the coarse Lite0's early blocks
    batch = to_batch([smooth_image(64, 96, seed=2)], (64, 96))
    with torch.no_grad():
        shared, norms = model.maps(batch)
        model.fine_stride = None  # the fine encoder's own pass instead
        alone, alone_norms = model.maps(batch)
        feats, fine_feats = model.backbone.tapped(batch, 8)
    torch.testing.assert_close(shared, alone, rtol=0, atol=1e-5)
    torch.testing.assert_close(norms, alone_norms)
    torch.testing.assert_close(fine_feats, model.fine.features(batch), rtol=0, atol=1e-6)
    torch.testing.assert_close(feats, model.backbone(batch))
    with pytest.raises(ConfigError, match='no block at stride 64'):
        model.backbone.tapped(batch, 64)


@pytest.mark.parametrize(
    'fine_backbone',
    [
        BackboneConfig(name='efficientnet_lite1', layers=[8]),  # another network
        BackboneConfig(weights='other.pth', layers=[8]),  # other weights
        BackboneConfig(layers=[4, 8]),  # two taps: not one activation of the trunk
    ],
)
def test_a_fine_level_unlike_the_coarse_trunk_keeps_its_own_encoder(fine_backbone):
    config = ModelConfig(input_size=[64, 64], refine='cascade', fine=FineConfig())
    config.fine.backbone = fine_backbone
    assert (
        shared_fine_stride(config, build_model(ModelConfig(input_size=[64, 64])).backbone) is None
    )
    config.fine.backbone = BackboneConfig(layers=[8])
    dino = build_model(
        ModelConfig(input_size=[56, 56], backbone=BackboneConfig(name='dinov2_vits14'))
    )
    assert shared_fine_stride(config, dino.backbone) is None  # a ViT has no stride-8 block


@pytest.mark.parametrize('density', ['knn', 'flow'])
def test_the_fine_density_is_saved_loaded_and_checked(density, tmp_path):
    model = _fine_model(density=density)
    with torch.no_grad():
        next(iter(model.fine.density.state_dict().values())).add_(0.25)  # unlike a fresh build
    save_model(model, tmp_path / 'm')
    state = trained_state(model)
    assert any(k.startswith('fine.') for k in state)
    loaded = load_model(tmp_path / 'm')
    for key, value in trained_state(loaded).items():
        torch.testing.assert_close(value, state[key])
    rgb = smooth_image(64, 64, seed=3)
    np.testing.assert_allclose(Detector(loaded)(rgb), Detector(model)(rgb), rtol=0, atol=1e-6)
    weights = load_file(tmp_path / 'm' / WEIGHTS_FILE)
    save_file({k: v for k, v in weights.items() if not k.startswith('fine.')}, tmp_path / 'w')
    (tmp_path / 'm' / WEIGHTS_FILE).write_bytes((tmp_path / 'w').read_bytes())
    config = (tmp_path / 'm' / 'config.json').read_text()
    (tmp_path / 'm' / 'config.json').write_text(config.replace(model.config.weights_sha256, ''))
    with pytest.raises(ModelFileError, match='does not fit'):
        load_model(tmp_path / 'm')


def test_detector_load_overrides_the_refinement(tmp_path):
    save_model(_fine_model(), tmp_path / 'm')
    rgb = smooth_image(64, 64, seed=1)
    refined = Detector.load(tmp_path / 'm')
    plain = Detector.load(tmp_path / 'm', refine='none')
    assert plain.model.config.refine == 'none'
    assert refined.model.config.refine == 'cascade'
    assert refined(rgb).shape == plain(rgb).shape == (64, 64)
    with pytest.raises(ConfigError, match='unknown refine'):
        Detector.load(tmp_path / 'm', refine='segments')


def test_region_consistency_pulls_each_segment_to_its_modal_bin():
    scores = torch.tensor([[0.0, 0.01, 0.02, 1.0], [5.0, 5.0, 5.0, 9.0]])
    labels = torch.tensor([[1, 1, 1, 1], [2, 2, 2, 0]])
    out = region_consistency(scores, labels)
    # Segment 1: 0, 0.01, 0.02 share the lowest of 20 bins over [0, 1]; 1.0 takes their mean.
    np.testing.assert_allclose(out[0].numpy(), [0.0, 0.01, 0.02, 0.01], atol=1e-6)
    # Segment 2 is flat (one bin); label 0 is no segment and keeps its score.
    np.testing.assert_allclose(out[1].numpy(), [5.0, 5.0, 5.0, 9.0])
    with pytest.raises(ConfigError, match='do not match'):
        region_consistency(scores, labels[:1])


def test_superpixels_follow_colour_edges():
    rgb = torch.zeros(3, 60, 90)
    rgb[0, :, 45:] = 1.0  # black left half, red right half
    labels = superpixels(rgb, segments=12)
    assert labels.shape == (60, 90)
    assert int(labels.min()) >= 1
    left, right = set(labels[:, :44].unique().tolist()), set(labels[:, 46:].unique().tolist())
    assert not left & right  # no superpixel straddles the edge
    assert 6 <= len(left | right) <= 20


def test_labels_of_another_size_are_scaled_to_the_scores_or_refused():
    scores = torch.arange(48.0).reshape(6, 8)
    small = torch.tensor([[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 0, 0]])  # at half the size
    out = with_segments(scores, small.numpy().astype(np.uint16))
    full = small.repeat_interleave(2, 0).repeat_interleave(2, 1)
    np.testing.assert_allclose(out.numpy(), region_consistency(scores, full).numpy())
    assert not torch.equal(out, scores)
    with pytest.raises(InputError, match='not a scaled copy') as info:
        with_segments(scores, np.ones((6, 16), np.uint8))
    assert info.value.reason == 'segments_size'
    with pytest.raises(InputError, match='2-D'):
        with_segments(scores, np.ones((6, 8, 3), np.uint8))


def test_label_images_take_one_integer_channel():
    msg = SimpleNamespace(
        height=2, width=3, encoding='mono16', step=6, data=bytes(range(12)), is_bigendian=0
    )
    assert label_image(msg).shape == (2, 3)
    assert label_image(msg).dtype == np.uint16
    msg.encoding = 'rgb8'
    with pytest.raises(InputError, match='segment labels') as info:
        label_image(msg)
    assert info.value.reason == 'segments_encoding'


def test_a_detector_refines_with_a_segmenter_before_calibration(tmp_path):
    save_model(build_model(ModelConfig(input_size=[64, 64], backbone=BackboneConfig())), tmp_path)
    detector = Detector.load(tmp_path)
    rgb = smooth_image(48, 64)
    plain = detector(rgb)
    one = np.ones((48, 64), np.int64)
    refined = detector.detect(rgb, False, lambda _: one)[0]
    raw = upsample(detector.engine(detector.preprocess(rgb))[0], (48, 64))[0]
    expected = calibrate(
        region_consistency(raw, torch.from_numpy(one))[None], detector.model.config.calibration
    )
    np.testing.assert_allclose(refined, expected[0].numpy(), atol=1e-6)
    assert len(np.unique(refined)) < len(np.unique(plain))
    np.testing.assert_array_equal(detector.detect(rgb, False, lambda _: None)[0], plain)
    labels = segmenter('superpixels')(rgb)
    assert labels.shape == (48, 64)
    assert segmenter('none') is None
    with pytest.raises(ConfigError, match='unknown segments'):
        segmenter('sam')
