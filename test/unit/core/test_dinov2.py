# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""DINOv2 backbone: official layout, both checkpoint formats, errors, ONNX export."""

from __future__ import annotations

from collections.abc import Iterator
import inspect
import os
from pathlib import Path
import warnings

import pytest
from safetensors.torch import load_file, save_file
import torch

from flowclas_ros.core.backbones import dinov2
from flowclas_ros.core.backbones.dinov2 import (
    DINOV2_NAMES,
    build_dinov2,
    save_hf_safetensors,
    save_official,
)
from flowclas_ros.core.backbones.dinov2_names import to_hf
from flowclas_ros.core.errors import ConfigError, ModelFileError

SMALL = 'dinov2_vits14'
SMALL_REG = 'dinov2_vits14_reg'


@pytest.fixture(scope='module', autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny inputs: thread wake-ups cost more than the math, so run this module single-threaded."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope='module')
def images() -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    return torch.rand(2, 3, 56, 84, generator=gen)


@pytest.fixture(scope='module')
def saved(tmp_path_factory: pytest.TempPathFactory, images: torch.Tensor) -> dict:
    """One random ViT-S and ViT-S reg, each saved in both formats, with reference outputs."""
    root = tmp_path_factory.mktemp('dinov2')
    out = {}
    for i, name in enumerate((SMALL, SMALL_REG)):
        torch.manual_seed(i)
        model = build_dinov2(name)
        official = root / f'{name}_pretrain.pth'
        hf_dir = root / f'{name}_hf'
        hf_dir.mkdir()
        save_official(model, official)
        save_hf_safetensors(model, hf_dir)
        out[name] = {
            'model': model,
            'official': official,
            'hf': hf_dir / 'model.safetensors',
            'hf_dir': hf_dir,
            'features': model(images),
        }
    return out


def test_names() -> None:
    assert len(DINOV2_NAMES) == 8
    assert {'dinov2_vits14', 'dinov2_vitg14_reg'} <= set(DINOV2_NAMES)


@pytest.mark.parametrize('name', [SMALL, SMALL_REG])
@pytest.mark.parametrize('fmt', ['official', 'hf', 'hf_dir'])
def test_round_trip(saved: dict, images: torch.Tensor, name: str, fmt: str) -> None:
    model = build_dinov2(name, saved[name][fmt])
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())
    assert torch.equal(model(images), saved[name]['features'])


def test_hf_keys_and_prefix(saved: dict, images: torch.Tensor, tmp_path: Path) -> None:
    hf = load_file(str(saved[SMALL_REG]['hf']))
    assert 'embeddings.register_tokens' in hf
    assert 'encoder.layer.11.attention.attention.value.bias' in hf
    assert 'encoder.layer.0.layer_scale2.lambda1' in hf
    # A classification checkpoint: 'dinov2.' prefix plus a head that must be ignored.
    wrapped = {f'dinov2.{k}': v for k, v in hf.items()}
    wrapped['classifier.weight'] = torch.zeros(10, 768)
    path = tmp_path / 'cls.safetensors'
    save_file(wrapped, str(path))
    model = build_dinov2(SMALL_REG, path)
    assert torch.equal(model(images), saved[SMALL_REG]['features'])


def test_format_detected_from_content(saved: dict, images: torch.Tensor, tmp_path: Path) -> None:
    misnamed = tmp_path / 'weights.safetensors'  # A torch.save file under a misleading name.
    misnamed.write_bytes(saved[SMALL]['official'].read_bytes())
    assert torch.equal(build_dinov2(SMALL, misnamed)(images), saved[SMALL]['features'])
    hf_pth = tmp_path / 'hf.bin'  # HF key names inside a torch.save file.
    torch.save(load_file(str(saved[SMALL]['hf'])), hf_pth)
    assert torch.equal(build_dinov2(SMALL, hf_pth)(images), saved[SMALL]['features'])


def test_output_shape_non_square(saved: dict) -> None:
    model = saved[SMALL]['model']
    assert (model.out_dim, model.stride, model.size_multiple) == (384, 14, 14)
    assert saved[SMALL]['features'].shape == (2, 384, 4, 6)
    assert saved[SMALL_REG]['features'].shape == (2, 384, 4, 6)


def test_several_layers_concatenated(saved: dict, images: torch.Tensor) -> None:
    path = saved[SMALL]['official']
    multi = build_dinov2(SMALL, path, layers=(3, -1))
    only3 = build_dinov2(SMALL, path, layers=(3,))
    assert multi.out_dim == 768
    out = multi(images[:1])
    assert out.shape == (1, 768, 4, 6)
    assert torch.allclose(out[:, :384], only3(images[:1]), atol=1e-6)
    assert torch.allclose(out[:, 384:], saved[SMALL]['features'][:1], atol=1e-6)
    assert not torch.allclose(out[:, :384], out[:, 384:])


@pytest.mark.parametrize('layers', [(), (12,), (-13,)])
def test_bad_layers(layers: tuple[int, ...]) -> None:
    with pytest.raises(ConfigError, match='layers'), torch.device('meta'):
        dinov2._new_model(SMALL, layers)


def test_unknown_name() -> None:
    with pytest.raises(ConfigError, match='dinov2_vitx14'):
        build_dinov2('dinov2_vitx14')


def test_input_not_multiple_of_14(saved: dict) -> None:
    with pytest.raises(ConfigError, match='multiples of 14'):
        saved[SMALL]['model'](torch.rand(1, 3, 57, 56))


def test_wrong_variant(saved: dict) -> None:
    with pytest.raises(ModelFileError) as err:
        build_dinov2('dinov2_vitb14', saved[SMALL]['official'])
    msg = str(err.value)
    assert '\n' not in msg
    assert str(saved[SMALL]['official']) in msg
    assert 'cls_token (1, 1, 384) vs (1, 1, 768)' in msg
    assert 'looks like dinov2_vits14' in msg
    with pytest.raises(ModelFileError, match='missing: register_tokens'):
        build_dinov2(SMALL_REG, saved[SMALL]['hf'])
    with pytest.raises(ModelFileError, match='unexpected: register_tokens'):
        build_dinov2(SMALL, saved[SMALL_REG]['official'])


def test_missing_key(saved: dict, tmp_path: Path) -> None:
    state = torch.load(saved[SMALL]['official'], weights_only=True)
    del state['blocks.5.ls2.gamma']
    path = tmp_path / 'partial.pth'
    torch.save(state, path)
    with pytest.raises(ModelFileError, match=r'missing: blocks\.5\.ls2\.gamma'):
        build_dinov2(SMALL, path)


def test_missing_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match='not found'):
        build_dinov2(SMALL, tmp_path / 'nope.pth')
    with pytest.raises(ModelFileError, match=r'model\.safetensors'):
        build_dinov2(SMALL, tmp_path)  # A directory without weights.
    garbage = tmp_path / 'garbage.pth'
    garbage.write_bytes(os.urandom(4096))
    with pytest.raises(ModelFileError, match=r'garbage\.pth') as err:
        build_dinov2(SMALL, garbage)
    assert '\n' not in str(err.value)
    fake_st = tmp_path / 'model.safetensors'
    fake_st.write_bytes((20).to_bytes(8, 'little') + b'{"a": broken json...')
    with pytest.raises(ModelFileError):
        build_dinov2(SMALL, fake_st)
    not_dinov2 = tmp_path / 'other.pth'
    torch.save({'fc.weight': torch.zeros(2, 2)}, not_dinov2)
    with pytest.raises(ModelFileError, match='not a DINOv2 checkpoint'):
        build_dinov2(SMALL, not_dinov2)


class _Payload:
    """Pickles to a call that creates a file: proves loading never runs pickled code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


def test_unsafe_pickle_refused(tmp_path: Path) -> None:
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    torch.save({'cls_token': _Payload(marker)}, path)
    with pytest.raises(ModelFileError):
        build_dinov2(SMALL, path)
    assert not marker.exists()


def test_vitg_official_layout() -> None:
    with torch.device('meta'):  # Shapes only: no memory for the 1.1 B parameters.
        model = dinov2._new_model('dinov2_vitg14_reg')
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    block = {
        k.removeprefix('blocks.0.'): v for k, v in shapes.items() if k.startswith('blocks.0.')
    }
    assert block == {
        'norm1.weight': (1536,),
        'norm1.bias': (1536,),
        'attn.qkv.weight': (4608, 1536),
        'attn.qkv.bias': (4608,),
        'attn.proj.weight': (1536, 1536),
        'attn.proj.bias': (1536,),
        'ls1.gamma': (1536,),
        'norm2.weight': (1536,),
        'norm2.bias': (1536,),
        'mlp.w12.weight': (8192, 1536),
        'mlp.w12.bias': (8192,),
        'mlp.w3.weight': (1536, 4096),
        'mlp.w3.bias': (1536,),
        'ls2.gamma': (1536,),
    }
    top = {k: v for k, v in shapes.items() if not k.startswith('blocks.')}
    assert top == {
        'cls_token': (1, 1, 1536),
        'pos_embed': (1, 1370, 1536),
        'register_tokens': (1, 4, 1536),
        'mask_token': (1, 1536),
        'patch_embed.proj.weight': (1536, 3, 14, 14),
        'patch_embed.proj.bias': (1536,),
        'norm.weight': (1536,),
        'norm.bias': (1536,),
    }
    assert 'blocks.39.ls2.gamma' in shapes
    assert 'blocks.40.norm1.weight' not in shapes
    hf = to_hf(model.state_dict())
    assert hf['encoder.layer.0.mlp.weights_in.weight'].shape == (8192, 1536)
    assert hf['encoder.layer.0.attention.attention.query.weight'].shape == (1536, 1536)


@pytest.mark.parametrize(
    ('name', 'depth', 'mlp_key'),
    [
        ('dinov2_vitb14', 12, 'mlp.fc1.weight'),
        ('dinov2_vitl14_reg', 24, 'mlp.fc1.weight'),
    ],
)
def test_other_variants_layout(name: str, depth: int, mlp_key: str) -> None:
    with torch.device('meta'):
        model = dinov2._new_model(name)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    dim = shapes['cls_token'][-1]
    assert shapes[f'blocks.{depth - 1}.{mlp_key}'] == (4 * dim, dim)
    assert f'blocks.{depth}.norm1.weight' not in shapes
    assert ('register_tokens' in shapes) == name.endswith('_reg')


def test_onnx_export_matches(saved: dict, tmp_path: Path) -> None:
    pytest.importorskip('onnx')
    ort = pytest.importorskip('onnxruntime')
    model = saved[SMALL_REG]['model']
    x = torch.rand(1, 3, 56, 56, generator=torch.Generator().manual_seed(2))
    path = tmp_path / 'dinov2.onnx'
    kwargs = (
        {'dynamo': False} if 'dynamo' in inspect.signature(torch.onnx.export).parameters else {}
    )
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # Legacy-exporter deprecation and tracer notices.
        torch.onnx.export(
            model,
            (x,),
            str(path),
            input_names=['images'],
            output_names=['features'],
            opset_version=17,
            **kwargs,
        )
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    (got,) = session.run(None, {'images': x.numpy()})
    expected = model(x)
    assert got.shape == (1, 384, 4, 4)
    assert torch.allclose(torch.from_numpy(got), expected, atol=1e-4)
