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
