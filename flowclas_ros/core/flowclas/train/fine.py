# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""The cascade's fine level, fitted after the coarse flow on the same training images.

On clean images alone: the fine level only has to say which pixels within a region the coarse
level already marks are unusual, so it needs no pseudo-outliers to learn a border between
normal and anomalous (the coarse level's contrastive term did that). A bank is a draw of the
images' cells; a flow is trained by likelihood.
"""

from __future__ import annotations

import math

import torch

from flowclas_ros.core.errors import ConfigError
from flowclas_ros.core.flowclas.model import FlowClasModel
from flowclas_ros.core.flowclas.refine import FineLevel, MemoryBank, fit_stats
from flowclas_ros.core.flowclas.train.batching import by_size, cosine_schedule, each_image


def _fine_level(model: FlowClasModel) -> FineLevel:
    if model.fine is None or model.config.fine is None:
        raise ConfigError('the model has no fine level (config.fine is null)')
    return model.fine


def train_fine(model: FlowClasModel, images: list[torch.Tensor]) -> list[float]:
    """Fit the fine density to the fine features of ``images``; a flow's mean NLL per epoch."""
    fine, tc = _fine_level(model), model.config.train
    device = model.device
    gen = torch.Generator().manual_seed(tc.seed + 5)
    if isinstance(fine.density, MemoryBank):
        bank = fine.density
        cells = each_image(lambda x: bank.embed(fine.features(x)).half(), images, device)
        bank.fill(torch.cat(cells), gen)
        model.config.fine.bank_size = len(bank.bank)
        return []
    flow = fine.density
    feats = each_image(lambda x: fine.features(x).half(), images, device)
    params = list(flow.parameters())
    opt = torch.optim.AdamW(params, lr=tc.lr, weight_decay=tc.weight_decay)
    steps = math.ceil(len(images) / tc.batch_size)
    total = model.config.fine.epochs * steps
    warmup = max(1, int(tc.warmup_fraction * total))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_schedule(s, total, warmup))
    history = []
    flow.train()
    for _ in range(model.config.fine.epochs):
        perm = torch.randperm(len(images), generator=gen).tolist()
        sum_nll = 0.0
        for step in range(steps):
            batch = perm[step * tc.batch_size : (step + 1) * tc.batch_size]
            log_probs = []
            for group in by_size(batch, feats):
                x = torch.stack([feats[i] for i in group]).to(device).float()
                x = x + tc.feature_noise * torch.randn(x.shape, generator=gen).to(device)
                log_probs.append(flow.log_prob(x)[0].flatten())
            nll = -torch.cat(log_probs).mean() / flow.channels
            if not torch.isfinite(nll):
                raise FloatingPointError(f'fine-level loss became {nll.item()}')
            opt.zero_grad(set_to_none=True)
            nll.backward()
            torch.nn.utils.clip_grad_norm_(params, tc.grad_clip)
            opt.step()
            sched.step()
            sum_nll += nll.item()
        history.append(sum_nll / steps)
    flow.eval()
    return history


def fit_level_stats(model: FlowClasModel, normal: list[torch.Tensor]) -> None:
    """Each level's z-scale on clean normal images (``config.fine.coarse`` and ``.fine``)."""
    fine, config = _fine_level(model), model.config.fine
    coarse = each_image(lambda x: model.patch_maps(model.features(x))[0], normal, model.device)
    detail = each_image(lambda x: fine.scores(fine.features(x)), normal, model.device)
    config.coarse = fit_stats([m.numpy() for m in coarse])
    config.fine = fit_stats([m.numpy() for m in detail])
