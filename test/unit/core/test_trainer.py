# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
import json

import pytest
from safetensors.torch import load_file
import torch

from flowclas_ros.core.config import ModelConfig
from flowclas_ros.core.data.synthetic import make_surface_dataset
from flowclas_ros.core.model import load_model
from flowclas_ros.core.train.trainer import train


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    root = make_surface_dataset(
        tmp_path_factory.mktemp('d'), n_train=8, n_test_per_class=1, size=(64, 64)
    )
    return root / 'train' / 'images'


def _config() -> ModelConfig:
    config = ModelConfig(input_size=[64, 64])
    config.train.epochs = 2
    config.train.batch_size = 4
    return config


class _CrashError(Exception):
    pass


def test_resume_after_a_crash_gives_the_same_model(images, tmp_path):
    train(_config(), images, tmp_path / 'straight', progress=False)

    def crash(entry):
        if entry['epoch'] == 0:
            raise _CrashError

    with pytest.raises(_CrashError):
        train(_config(), images, tmp_path / 'resumed', progress=False, on_epoch=crash)
    result = train(_config(), images, tmp_path / 'resumed', progress=False, resume=True)
    assert len(result.history) == 2
    a = load_file(tmp_path / 'straight' / 'flow.safetensors')
    b = load_file(tmp_path / 'resumed' / 'flow.safetensors')
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_model_directory_is_self_describing(images, tmp_path):
    train(_config(), images, tmp_path / 'm', progress=False)
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


def test_labelled_validation_keeps_the_best_epoch(images, tmp_path):
    split = images.parent.parent / 'test'
    result = train(_config(), images, tmp_path / 'm', val_dir=split, progress=False)
    aps = [entry['val_ap'] for entry in result.history]
    assert result.best_val_ap == max(aps)
    assert result.best_epoch == aps.index(max(aps))
    assert (tmp_path / 'm' / 'flow.safetensors').is_file()
