# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""CUDA against the CPU: run with ``-m gpu`` on a machine with a GPU (CI has none)."""

from models import make_model, smooth_image
import numpy as np
import pytest
import torch

from flowclas_ros.core.inference import Detector

pytestmark = pytest.mark.gpu


@pytest.fixture(scope='module')
def model_dir(tmp_path_factory):
    if not torch.cuda.is_available():
        pytest.fail('-m gpu needs a CUDA device')
    return make_model(tmp_path_factory.mktemp('gpu') / 'm96', 96)


@pytest.mark.parametrize(('backend', 'precision', 'atol'), [
    ('torch', 'fp32', 1e-3), ('torch', 'fp16', 2e-2), ('onnxruntime', 'fp32', 1e-3),
])  # fmt: skip
def test_cuda_scores_match_the_cpu(model_dir, tmp_path, backend, precision, atol):
    rgb = smooth_image(120, 160, seed=3)
    cpu = Detector.load(model_dir)(rgb)
    gpu = Detector.load(
        model_dir, device='cuda', backend=backend, precision=precision, cache_dir=tmp_path
    )(rgb)
    assert gpu.shape == cpu.shape
    np.testing.assert_allclose(gpu, cpu, atol=atol)


def test_outputs_made_on_the_gpu_are_the_cpu_bytes(model_dir):
    rgb = smooth_image(120, 160, seed=4)
    wanted = {'score', 'mask', 'heatmap', 'overlay'}
    cpu = Detector.load(model_dir).render(rgb, wanted)
    gpu = Detector.load(model_dir, device='cuda').render(rgb, wanted)
    np.testing.assert_allclose(gpu['score'], cpu['score'], atol=1e-3)
    near = np.abs(cpu['score'] - 0.5) < 2e-3  # the default threshold: rounding may flip these
    np.testing.assert_array_equal(gpu['mask'][~near], cpu['mask'][~near])
    # The same scores coloured on either side give the same bytes.
    from flowclas_ros.core.visualize import heatmap

    scores = torch.from_numpy(cpu['score'])
    np.testing.assert_array_equal(heatmap(scores.cuda()).cpu().numpy(), heatmap(cpu['score']))
