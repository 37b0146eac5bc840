# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
import math

import pytest
import torch
from torch.autograd.functional import jacobian

from flowclas_ros.core.flowclas.flow import ActNorm, AffineCoupling, ChannelPermutation, Flow

HALF_LOG_2PI_E = 0.5 * math.log(2 * math.pi) + 0.5  # per-dimension entropy of N(0, 1)
# These tests check the maths, not a model's size: a subnet as wide as the features.
SUBNET = {'hidden_ratio': 1.0, 'clamp': 2.0}


def _flow(channels: int, steps: int) -> Flow:
    return Flow(channels, steps, seed=0, **SUBNET)


def _randomized(flow: Flow, seed: int = 0) -> Flow:
    """Perturb every parameter so no layer is the identity (the zero init would hide bugs)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))
        for m in flow.modules():
            if isinstance(m, ActNorm):
                m.initialized.fill_(True)
    return flow.double().eval()


@pytest.mark.parametrize('channels', [4, 5])
def test_flow_is_invertible(channels):
    flow = _randomized(_flow(channels, 4))
    x = torch.randn(2, channels, 5, 6, dtype=torch.float64)
    z, _ = flow(x)
    assert not torch.allclose(z, x)
    torch.testing.assert_close(flow.inverse(z), x, rtol=0, atol=1e-10)


@pytest.mark.parametrize(
    'layer', [ActNorm(4), ChannelPermutation(4, seed=3), AffineCoupling(4, kernel=1, **SUBNET)]
)
def test_each_layer_inverts(layer):
    torch.manual_seed(0)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.5 * torch.randn_like(p))
    layer = layer.double().eval()
    x = torch.randn(3, 4, 2, 2, dtype=torch.float64)
    y, logdet = layer(x)
    assert logdet.shape == (3, 2, 2)
    torch.testing.assert_close(layer.inverse(y), x)


def test_per_pixel_logdet_matches_autograd_for_pointwise_flow():
    # With 1x1 subnets only, each pixel is its own bijection: compare pixel by pixel.
    flow = _flow(3, 2)
    for layer in flow.layers:
        if isinstance(layer, AffineCoupling):
            layer.subnet[0] = torch.nn.Conv2d(1, 8, 1)
            layer.subnet[2] = torch.nn.Conv2d(8, 4, 1)
    flow = _randomized(flow)
    x = torch.randn(1, 3, 2, 2, dtype=torch.float64)
    _, logdet = flow(x)
    for i in range(2):
        for j in range(2):

            def pixel_map(v, i=i, j=j):
                xx = x.clone()
                xx[0, :, i, j] = v
                return flow(xx)[0][0, :, i, j]

            jac = jacobian(pixel_map, x[0, :, i, j])
            expected = torch.linalg.slogdet(jac).logabsdet
            torch.testing.assert_close(logdet[0, i, j], expected)


def test_summed_logdet_matches_full_jacobian_with_3x3_subnets():
    # 3x3 subnets couple neighbours, but the Jacobian stays triangular in blocks, so the
    # per-pixel log-dets must add up to the log-det of the whole map.
    flow = _randomized(_flow(4, 3), seed=1)
    x = torch.randn(1, 4, 3, 3, dtype=torch.float64)
    _, logdet = flow(x)
    jac = jacobian(lambda v: flow(v.reshape(x.shape))[0].reshape(-1), x.reshape(-1))
    torch.testing.assert_close(logdet.sum(), torch.linalg.slogdet(jac).logabsdet)


def test_nll_of_gaussian_data_is_analytic():
    # Data N(m, s^2) per channel: ActNorm's data init standardizes it exactly, so the flow's
    # NLL per dimension must equal the Gaussian entropy 0.5 log(2 pi e) + mean(log s).
    torch.manual_seed(0)
    C = 8
    m, s = torch.randn(1, C, 1, 1) * 3, torch.exp(torch.randn(1, C, 1, 1))
    x = m + s * torch.randn(64, C, 16, 16)
    flow = _flow(C, 4)
    flow.train()
    flow(x)  # data-dependent init
    flow.eval()
    with torch.no_grad():
        log_prob, z = flow.log_prob(x)
    nll = -log_prob.mean().item() / C
    expected = HALF_LOG_2PI_E + torch.log(s).mean().item()
    assert nll == pytest.approx(expected, abs=0.01)
    assert z.mean().abs() < 0.05
    assert z.std().item() == pytest.approx(1.0, abs=0.05)


@pytest.mark.slow
def test_training_reaches_the_entropy_of_correlated_data_on_held_out_samples():
    torch.manual_seed(0)
    C = 6
    mix = torch.randn(C, C)

    def sample(n):
        return torch.einsum('dc,bchw->bdhw', mix, torch.randn(n, C, 6, 6))

    x, held_out = sample(256), sample(64)
    # Entropy per dimension of the correlated Gaussian: the best achievable held-out NLL.
    cov = mix @ mix.T
    entropy = (HALF_LOG_2PI_E * C + 0.5 * torch.linalg.slogdet(cov).logabsdet).item() / C
    flow = _flow(C, 4)
    flow.train()
    opt = torch.optim.Adam(flow.parameters(), lr=3e-3)
    for _ in range(120):
        loss = -flow.log_prob(x)[0].mean() / C
        opt.zero_grad()
        loss.backward()
        opt.step()
    flow.eval()
    with torch.no_grad():
        nll = (-flow.log_prob(held_out)[0].mean() / C).item()
    assert entropy - 0.05 < nll < entropy + 0.15


def test_untrained_coupling_is_identity():
    layer = AffineCoupling(6, kernel=3, **SUBNET).eval()
    x = torch.randn(2, 6, 4, 4)
    y, logdet = layer(x)
    torch.testing.assert_close(y, x)
    assert logdet.abs().max() == 0
