# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
import json

import numpy as np
from PIL import Image
import pytest
from safetensors.torch import load_file
import torch

from flowclas_ros.core.backbones.efficientnet import EfficientNetLite
from flowclas_ros.core.config import BackboneConfig, FineConfig, LevelStats, ModelConfig
from flowclas_ros.core.data.synthetic import make_surface_dataset
from flowclas_ros.core.errors import ConfigError, ModelFileError
from flowclas_ros.core.flowclas.model import build_model, load_model
from flowclas_ros.core.flowclas.train.trainer import TrainOptions, train
from flowclas_ros.core.inference import Detector


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    root = make_surface_dataset(
        tmp_path_factory.mktemp('d'), n_train=8, n_test_per_class=1, size=(64, 64)
    )
    return root / 'train' / 'images'


def _config() -> ModelConfig:
    # EfficientNet-Lite0 alone: its stride-16 grid gives these 64 px images 16 patches.
    config = ModelConfig(input_size=[64, 64], backbone=BackboneConfig())
    config.train.epochs = 2
    config.train.batch_size = 4
    return config


def _options(**kw) -> TrainOptions:
    # On the CPU wherever the tests run: a resumed run repeats the host generator's draws
    # exactly (the checkpoint holds its state, not a GPU's).
    return TrainOptions(device='cpu', **kw)


class _CrashError(Exception):
    pass


@pytest.mark.slow
def test_resume_after_a_crash_gives_the_same_model(images, tmp_path):
    train(_config(), images, tmp_path / 'straight', _options(), progress=False)

    def crash(entry):
        if entry['epoch'] == 0:
            raise _CrashError

    with pytest.raises(_CrashError):
        train(_config(), images, tmp_path / 'resumed', _options(on_epoch=crash), progress=False)
    result = train(_config(), images, tmp_path / 'resumed', _options(resume=True), progress=False)
    assert len(result.history) == 2
    a = load_file(tmp_path / 'straight' / 'flow.safetensors')
    b = load_file(tmp_path / 'resumed' / 'flow.safetensors')
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_model_directory_is_self_describing(images, tmp_path):
    train(_config(), images, tmp_path / 'm', _options(), progress=False)
    log = json.loads((tmp_path / 'm' / 'train_log.json').read_text())
    assert log['n_train'] + log['n_val'] == 8
    model = load_model(tmp_path / 'm')
    cal = model.config.calibration
    assert cal.width > 0
    assert cal.quantiles['0.5'] <= cal.quantiles['0.99'] <= cal.quantiles['0.999']
    with torch.no_grad():
        scores = model(torch.rand(2, 3, 64, 64))
    assert scores.shape == (2, 64, 64)
    assert torch.isfinite(scores).all()


@pytest.mark.slow
def test_labelled_validation_keeps_the_best_epoch(images, tmp_path):
    split = images.parent.parent / 'test'
    result = train(_config(), images, tmp_path / 'm', _options(val_dir=split), progress=False)
    aps = [entry['val_ap'] for entry in result.history]
    assert result.best_val_ap == max(aps)
    assert result.best_epoch == aps.index(max(aps))
    assert (tmp_path / 'm' / 'flow.safetensors').is_file()


@pytest.mark.slow
def test_native_policy_trains_and_calibrates_on_images_of_several_sizes(images, tmp_path):
    folder = tmp_path / 'mixed'
    folder.mkdir()
    sizes = [(64, 64), (64, 128), (128, 96), (96, 64)]
    for i, path in enumerate(sorted(images.iterdir())):
        h, w = sizes[i % len(sizes)]
        Image.open(path).resize((w, h)).save(folder / f'{i:02d}.png')
    config = _config()
    config.input_size, config.size_policy = [96, 96], 'native'
    config.train.val_fraction = 0.25  # two held-out images
    config.train.paste_probability = 1.0
    train(config, folder, tmp_path / 'm', _options(), progress=False)
    model = load_model(tmp_path / 'm')
    assert model.config.size_policy == 'native'
    detector = Detector(model)
    assert detector.network_size(64, 128) == (64, 128)  # kept: within the pixel budget
    assert detector.network_size(128, 96) == (96, 96)  # shrunk to about 96 x 96 pixels
    held_out = model.config.calibration.fpr
    assert held_out.n_images == 2
    # Each held-out image is scored at its own network size, 16 x 16 pixels per patch.
    patches = [4 * 4, 4 * 8, 6 * 6, 6 * 4]
    assert held_out.n_pixels in {a + b for a in patches for b in patches}
    scores = detector(np.zeros((64, 128, 3), np.uint8))
    assert scores.shape == (64, 128)
    assert np.isfinite(scores).all()


@pytest.mark.slow
def test_a_crash_while_overwriting_leaves_the_old_model_whole(images, tmp_path):
    out = tmp_path / 'm'
    train(_config(), images, out, _options(), progress=False)
    before = load_file(out / 'flow.safetensors')

    def crash(entry):
        raise _CrashError

    config = _config()
    config.train.seed = 1
    with pytest.raises(_CrashError):
        train(config, images, out, _options(on_epoch=crash, overwrite=True), progress=False)
    after = load_model(out)  # still the old model, complete
    for key, value in before.items():
        torch.testing.assert_close(after.state_dict()[key], value, rtol=0, atol=0)
    # The interrupted run is neither silently discarded nor mixed in: resume finishes it.
    with pytest.raises(ModelFileError, match='interrupted'):
        train(config, images, out, _options(overwrite=True), progress=False)
    train(config, images, out, _options(resume=True), progress=False)
    assert load_file(out / 'flow.safetensors').keys() == before.keys()
    assert not (tmp_path / '.m.partial').exists()
    assert json.loads((out / 'train_log.json').read_text())['n_train'] == 7


def _backbone_inputs(config, images, out):
    """The image size of every frozen-encoder call during a training run (a global hook)."""
    sizes = []

    def hook(module, args, output):
        if isinstance(module, EfficientNetLite):
            sizes.append(tuple(args[0].shape[-2:]))

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        train(config, images, out, _options(), progress=False)
    finally:
        handle.remove()
    return sizes


@pytest.mark.parametrize('variants', [0, 2])
def test_fixed_pasted_variants_keep_the_encoder_out_of_the_epochs(images, tmp_path, variants):
    counts = []
    for epochs in (1, 3):
        config = _config()
        config.train.epochs, config.train.pasted_variants = epochs, variants
        config.train.paste_probability, config.train.crop = 1.0, 2
        counts.append(len(_backbone_inputs(config, images, tmp_path / f'{epochs}')))
    if variants:
        assert counts[0] == counts[1]  # features of pasted images were computed once
    else:
        assert counts[1] > counts[0]  # pasted afresh: the encoder runs at every step
    model = load_model(tmp_path / '3')
    assert model.config.train.pasted_variants == variants
    assert np.isfinite(Detector(model)(np.zeros((64, 64, 3), np.uint8))).all()


def test_max_images_trains_on_evenly_spaced_images(images, tmp_path):
    config = _config()
    config.train.max_images, config.train.epochs = 4, 1
    train(config, images, tmp_path / 'm', _options(), progress=False)
    log = json.loads((tmp_path / 'm' / 'train_log.json').read_text())
    assert log['n_train'] + log['n_val'] == 4


@pytest.mark.parametrize('density', ['knn', 'flow'])
def test_a_cascade_trains_its_fine_level_and_fits_both_scales(density, images, tmp_path):
    config = _config()
    config.refine = 'cascade'
    config.fine = FineConfig(density=density, epochs=3, bank_size=10**6)
    train(config, images, tmp_path / 'm', _options(), progress=False)
    log = json.loads((tmp_path / 'm' / 'train_log.json').read_text())
    model = load_model(tmp_path / 'm')
    fine = model.config.fine
    assert fine.coarse != LevelStats()
    assert fine.fine != LevelStats()
    if density == 'flow':
        assert len(log['fine_nll']) == 3
        assert log['fine_nll'][-1] < log['fine_nll'][0]
        untrained = build_model(model.config)
        moved = [
            not torch.equal(a, b)
            for a, b in zip(
                model.fine.density.parameters(), untrained.fine.density.parameters(), strict=True
            )
        ]
        assert any(moved)
    else:  # fewer training cells than rows: the bank holds every one, and says so
        bank = model.fine.density.bank
        assert 0 < len(bank) == fine.bank_size < 10**6
        assert bank.abs().sum() > 0
    detector = Detector(model)
    frame = np.asarray(Image.open(next(images.iterdir())).convert('RGB'))
    scores = detector(frame)
    assert scores.shape == frame.shape[:2]
    assert np.isfinite(scores).all()
    # Calibrated on the refined maps: normal training frames sit mostly below 0.5.
    assert float(np.median(scores)) < 0.5


def test_a_primary_flow_trains_beside_the_main_one(images, tmp_path):
    config = _config()
    config.backbone = ModelConfig().backbone  # Lite0 + DINOv2: the primary flow reads Lite0
    config.train.epochs, config.primary_weight = 1, 0.3
    train(config, images, tmp_path / 'm', _options(), progress=False)
    model = load_model(tmp_path / 'm')
    untrained = build_model(model.config)
    for trained, initial in (
        (model.flow, untrained.flow),
        (model.primary_flow, untrained.primary_flow),
        (model.primary_head, untrained.primary_head),
    ):
        pairs = zip(trained.parameters(), initial.parameters(), strict=True)
        assert any(not torch.equal(a, b) for a, b in pairs)
    assert model.primary_flow.channels == model.backbone.primary.out_dim
    assert all(
        bool(m.initialized) for m in model.primary_flow.modules() if hasattr(m, 'initialized')
    )
    frame = np.asarray(Image.open(next(images.iterdir())).convert('RGB'))
    scores = Detector(model)(frame)
    assert np.isfinite(scores).all()
    assert float(np.median(scores)) < 0.5  # calibrated on the blended map


def test_train_input_size_trains_there_and_calibrates_at_the_model_size(images, tmp_path):
    config = _config()
    config.size_policy, config.train.input_size = 'fixed', [32, 32]
    config.train.epochs, config.train.paste_probability = 1, 1.0
    sizes = set(_backbone_inputs(config, images, tmp_path / 'm'))
    assert sizes == {(32, 32), (64, 64)}  # training frames; the held-out normal one
    model = load_model(tmp_path / 'm')
    assert model.config.train.input_size == [32, 32]
    assert model.config.calibration.fpr.n_pixels == 4 * 4  # one 64 x 64 frame, stride 16
    assert Detector(model).network_size(48, 48) == (64, 64)
    config.train.input_size = [32, 40]
    with pytest.raises(ConfigError, match='32x40'):
        build_model(config)


@pytest.mark.parametrize(
    ('key', 'size'), [('input_size', [0, 64]), ('train.input_size', [64, -32])]
)
def test_sizes_no_model_could_use_are_refused_before_training(images, tmp_path, key, size):
    config = _config()
    owner = config.train if key.startswith('train.') else config
    owner.input_size = size
    with pytest.raises(ConfigError, match=f"'{key}'"):
        train(config, images, tmp_path / 'm', _options(), progress=False)
    assert not (tmp_path / 'm').exists()
