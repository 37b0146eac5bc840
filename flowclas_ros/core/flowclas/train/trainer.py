# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Label-free FlowCLAS training from a folder of normal images.

Per step: paste pseudo-outliers into inlier images, extract frozen features, run the flow,
and minimise ``alpha * NLL(inlier patches) + InfoNCE(projected latents)``. The backbone is
frozen, so clean images' features are computed once; only pasted images go through it again.
``mode='nll'`` trains with the likelihood alone (FastFlow-style), for comparison. Images keep
their own network sizes (``ModelConfig.size_policy``); batches are grouped by size.
With a labelled validation split (``val_dir``) the epoch with the best AP on it is kept.
Without one, the last epoch is kept (the cosine schedule ends at zero learning rate): AP on
held-out images with pasted pseudo-outliers is still logged, but it saturates within an
epoch and chose worse epochs than the last one on real defects.

This module holds the epoch loop and ``train``; what a run reads once is in ``data``, the
pseudo-outlier draws in ``outliers``, checkpoint choice and calibration in ``validation``,
the optimiser state in ``optim`` and the model directory's staging in ``publish``.
"""

from __future__ import annotations

from collections.abc import Callable
import copy
from dataclasses import dataclass
from pathlib import Path
import time

import torch

from flowclas_ros.core.config import THRESHOLD_ON, TRAIN_MODES, ModelConfig, TrainConfig
from flowclas_ros.core.device import DEFAULT_DEVICE, torch_device
from flowclas_ros.core.errors import ConfigError
from flowclas_ros.core.flowclas.losses import inlier_nll, normalize_embeddings, pixel_contrastive
from flowclas_ros.core.flowclas.model import (
    FlowClasModel,
    build_model,
    load_trained_state,
    save_model,
)
from flowclas_ros.core.flowclas.train.batching import by_size, progress_line
from flowclas_ros.core.flowclas.train.data import TrainData, load_data
from flowclas_ros.core.flowclas.train.fine import fit_level_stats, train_fine
from flowclas_ros.core.flowclas.train.optim import Optimization, TrainResult
from flowclas_ros.core.flowclas.train.outliers import crop, paste_from
from flowclas_ros.core.flowclas.train.publish import LOG_FILE, STATE_FILE, publish, workspace
from flowclas_ros.core.flowclas.train.validation import calibration
from flowclas_ros.core.jsonio import write_json

__all__ = ['TrainOptions', 'TrainResult', 'train']


@dataclass(frozen=True)
class TrainOptions:
    """How one run is carried out, beyond the configuration it trains (which the model keeps).

    Attributes:
        outlier_dir: outlier images (and ``masks/``) to paste; procedural ones otherwise.
        val_dir: a split (``images/``, ``masks/``) for checkpoint selection.
        device: torch device, or ``auto`` (``core.device``).
        resume: continue an interrupted run (or the trained model's last epoch).
        overwrite: replace a model already in the output directory (otherwise an error).
        on_epoch: called with each epoch's log entry.
    """

    outlier_dir: str | Path | None = None
    val_dir: str | Path | None = None
    device: str = DEFAULT_DEVICE
    resume: bool = False
    overwrite: bool = False
    on_epoch: Callable[[dict[str, float]], None] | None = None


def check_settings(tc: TrainConfig) -> None:
    """Training settings no run could use, as one ``ConfigError``."""
    if tc.mode not in TRAIN_MODES:
        raise ConfigError(f'unknown training mode {tc.mode!r}; choose from {TRAIN_MODES}')
    if tc.threshold_on not in THRESHOLD_ON:
        raise ConfigError(f'unknown threshold_on {tc.threshold_on!r}; choose from {THRESHOLD_ON}')
    if tc.alpha <= 0 or tc.temperature <= 0 or tc.inlier_margin < 0:
        raise ConfigError(
            'alpha and temperature must be positive and inlier_margin at least 0, got '
            f'{tc.alpha}, {tc.temperature} and {tc.inlier_margin}'
        )
    if not 0 < tc.paste_probability <= 1:
        raise ConfigError(f'paste_probability must be in (0, 1], got {tc.paste_probability}')
    for key in ('pasted_variants', 'max_images', 'crop'):
        if getattr(tc, key) < 0:
            raise ConfigError(f'{key} must be >= 0, got {getattr(tc, key)}')


def batch_losses(
    data: TrainData, batch: list[int], gen: torch.Generator, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Likelihood and contrastive terms of one batch, summed over the model's flows."""
    model, tc = data.model, data.model.config.train
    grids, labels = [], []
    for group in by_size(batch, data.train_images):
        feats, grid = crop(*paste_from(data, group, gen, device), tc.crop, gen)
        grids.append(feats + tc.feature_noise * torch.randn_like(feats))
        labels.append(grid.flatten())
    label = torch.cat(labels).to(device)
    nll = con = torch.zeros((), device=device)
    for flow, head, channels in model.densities():
        log_probs, embeddings = [], []
        for feats in grids:
            log_prob, z = flow.log_prob(feats[:, :channels])
            log_probs.append(log_prob.flatten())
            if tc.mode == 'flowclas':
                emb = normalize_embeddings(head(z))
                embeddings.append(emb.permute(0, 2, 3, 1).reshape(-1, emb.shape[1]))
        nll = nll + inlier_nll(torch.cat(log_probs), label, channels)
        if embeddings:
            # One row of patches: the losses only need each patch's embedding and label.
            emb = torch.cat(embeddings).T[None, :, None, :]
            con = con + pixel_contrastive(
                emb, label[None, None], tc.temperature, tc.samples_per_set, gen=gen
            )
    return nll, con


def train_epoch(
    model: FlowClasModel,
    data: TrainData,
    state: Optimization,
    epoch: int,
    start: float,
    progress: bool,
) -> dict[str, float]:
    """One pass over the training images, then the validation AP; the epoch's log entry."""
    tc, dev = model.config.train, model.device
    model.train_flows()
    perm = torch.randperm(len(data.train_images), generator=state.gen).tolist()
    sums = {'loss': 0.0, 'nll': 0.0, 'con': 0.0}
    for step in range(state.steps_per_epoch):
        batch = perm[step * tc.batch_size : (step + 1) * tc.batch_size]
        nll, con = batch_losses(data, batch, state.gen, dev)
        loss = tc.alpha * nll + con
        if not torch.isfinite(loss):
            raise FloatingPointError(f'loss became {loss.item()} at epoch {epoch}')
        state.opt.zero_grad(set_to_none=True)
        loss.backward()
        for params in state.clip_groups:  # each flow as if trained alone
            torch.nn.utils.clip_grad_norm_(params, tc.grad_clip)
        state.opt.step()
        state.sched.step()
        sums['loss'] += loss.item()
        sums['nll'] += nll.item()
        sums['con'] += con.item()
        progress_line(
            f'epoch {epoch + 1}/{tc.epochs} step {step + 1}/{state.steps_per_epoch} '
            f'loss {sums["loss"] / (step + 1):.4f} ({time.time() - start:.0f} s)',
            progress,
        )
    model.train_flows(False)
    entry = {k: v / state.steps_per_epoch for k, v in sums.items()}
    return entry | {
        'epoch': epoch,
        'val_ap': data.val.ap(model, dev),
        'seconds': time.time() - start,
    }


def _log(
    result: TrainResult,
    fine_nll: list[float],
    images_dir: str | Path,
    options: TrainOptions,
    data: TrainData,
) -> dict[str, object]:
    """The run's ``train_log.json``."""
    return {
        'best_epoch': result.best_epoch,
        'best_val_ap': result.best_val_ap,
        'seconds': result.seconds,
        'history': result.history,
        'fine_nll': fine_nll,
        'images': str(images_dir),
        'outliers': None if options.outlier_dir is None else str(options.outlier_dir),
        'val': None if options.val_dir is None else str(options.val_dir),
        'n_train': len(data.train_images),
        'n_val': len(data.val.images),
    }


def train(
    config: ModelConfig,
    images_dir: str | Path,
    out_dir: str | Path,
    options: TrainOptions | None = None,
    *,
    progress: bool = True,
) -> TrainResult:
    """Train a model and write its directory (config, weights, calibration, log).

    Training runs in a staging folder beside ``out_dir`` (``.<name>.partial``, which also
    holds the checkpoint for ``options.resume``) that replaces ``out_dir`` only when complete.

    Args:
        config: model and training configuration; ``config.train.mode`` picks the losses.
        images_dir: folder of normal images (no labels).
        out_dir: model directory to write.
        options: outliers, validation split, device, resume and overwrite (``TrainOptions``).
        progress: print a progress line to stderr.
    """
    options = options if options is not None else TrainOptions()
    config = copy.deepcopy(config)  # calibration and hashes are filled in; not the caller's
    config.check_values()  # options set one by one (flowclas-train, Python) skip from_dict's
    check_settings(config.train)
    dev = torch_device(options.device)
    out_dir = Path(out_dir)
    work, resume_from = workspace(out_dir, options.resume, options.overwrite)
    start = time.time()
    torch.manual_seed(config.train.seed)
    model = build_model(config).to(dev)
    data = load_data(model, images_dir, options.outlier_dir, options.val_dir, progress)
    state = Optimization(model, len(data.train_images))
    if resume_from is not None:
        state.restore(resume_from)
    for epoch in range(state.first_epoch, config.train.epochs):
        entry = train_epoch(model, data, state, epoch, start, progress)
        state.end_epoch(entry, keep_best=options.val_dir is not None)
        state.save(work / STATE_FILE, epoch)
        if options.on_epoch is not None:
            options.on_epoch(entry)
    progress_line('', progress)
    if state.best is not None:
        load_trained_state(model, state.best)
    fine_nll = train_fine(model, data.train_images) if model.fine is not None else []
    if model.fine is not None:
        fit_level_stats(model, data.val.normal)
    model.config.calibration = calibration(model, data.val, dev)
    save_model(model, work)
    state.result.seconds = time.time() - start
    write_json(work / LOG_FILE, _log(state.result, fine_nll, images_dir, options, data))
    publish(work, out_dir)
    return state.result
