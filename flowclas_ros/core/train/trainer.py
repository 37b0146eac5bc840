# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Label-free FlowCLAS training from a folder of normal images.

Per step: paste pseudo-outliers into inlier images, extract frozen features, run the flow,
and minimise ``alpha * NLL(inlier patches) + InfoNCE(projected latents)``. ``mode='nll'``
trains on cached clean features with the likelihood alone (FastFlow-style), for comparison.
With a labelled validation split (``val_dir``) the epoch with the best AP on it is kept.
Without one, the last epoch is kept (the cosine schedule ends at zero learning rate): AP on
held-out images with pasted pseudo-outliers is still logged, but it saturates within an
epoch and chose worse epochs than the last one on real defects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
import json
import math
from pathlib import Path
import sys
import time

import torch
import torch.nn.functional as F

from flowclas_ros.core.config import ModelConfig
from flowclas_ros.core.data.images import (
    IGNORE_LABEL,
    list_images,
    list_split,
    read_mask,
    read_rgb,
    to_batch,
)
from flowclas_ros.core.data.outliers import PseudoOutliers
from flowclas_ros.core.errors import ConfigError, DataError, ModelFileError
from flowclas_ros.core.losses import inlier_nll, normalize_embeddings, pixel_contrastive
from flowclas_ros.core.metrics import exact_pixel_metrics
from flowclas_ros.core.model import (
    FlowClasModel,
    build_model,
    load_trained_state,
    save_model,
    trained_state,
)
from flowclas_ros.core.scoring import fit_calibration

STATE_FILE = 'train_state.pt'
LOG_FILE = 'train_log.json'
MODES = ('flowclas', 'nll')


@dataclass
class TrainResult:
    best_epoch: int
    best_val_ap: float
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


def grid_labels(labels: torch.Tensor, size: tuple[int, int], margin: int = 0) -> torch.Tensor:
    """Pixel labels ``(B, H, W)`` -> patch labels at the feature grid.

    A patch is an outlier when at least half of it is pasted, an inlier when none of it is and
    none of it lies within ``margin`` patches of a pasted pixel, and void otherwise. Mixed
    patches would teach the flow that outliers are likely; so would their neighbours, whose
    features carry the pasted content through the backbone's receptive field.
    """
    pasted = (labels == 1).float()[:, None]
    frac = F.adaptive_avg_pool2d(pasted, size)[:, 0]
    near = F.adaptive_max_pool2d(pasted, size)
    if margin > 0:
        near = F.max_pool2d(near, 2 * margin + 1, 1, margin)
    void = F.adaptive_max_pool2d((labels == IGNORE_LABEL).float()[:, None], size)[:, 0]
    out = torch.full(frac.shape, IGNORE_LABEL, dtype=torch.uint8)
    out[near[:, 0] == 0] = 0
    out[frac >= 0.5] = 1
    out[void > 0] = IGNORE_LABEL
    return out


def _load_images(files: list[Path], size: tuple[int, int]) -> torch.Tensor:
    """Images at the model input size, kept as uint8 to hold large folders in memory."""
    return torch.cat([(to_batch([read_rgb(p)], size) * 255).round().byte() for p in files])


def _as_float(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    return images.to(device).float() / 255


class _Validation:
    """Fixed validation images and patch labels, scored each epoch for checkpoint choice."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, normal: torch.Tensor) -> None:
        self.images = images
        self.labels = labels
        self.normal = normal  # clean normal images for calibration

    @torch.no_grad()
    def maps(
        self, model: FlowClasModel, images: torch.Tensor, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw patch scores and latent norms, each ``(N, h, w)``."""
        scores, norms = [], []
        for i in range(0, len(images), 8):
            s, n = model.patch_maps(model.features(_as_float(images[i : i + 8], device)))
            scores.append(s.cpu())
            norms.append(n.cpu())
        return torch.cat(scores), torch.cat(norms)

    def ap(self, model: FlowClasModel, device: torch.device) -> float:
        scores = self.maps(model, self.images, device)[0]
        labels = grid_labels(self.labels, tuple(scores.shape[-2:]))
        return float(exact_pixel_metrics(scores.numpy(), labels.numpy())['ap'])


def _validation(
    config: ModelConfig,
    held_out: torch.Tensor,
    val_dir: str | Path | None,
    paster: PseudoOutliers,
) -> _Validation:
    size = tuple(config.input_size)
    if val_dir is None:
        if len(held_out) == 0:
            raise DataError('no images left for validation; add images or pass --val')
        gen = torch.Generator().manual_seed(config.train.seed + 1)
        mixed, labels = paster.paste(_as_float(held_out, torch.device('cpu')), gen)
        return _Validation((mixed * 255).round().byte(), labels, held_out)
    items = list_split(val_dir)
    images, labels = [], []
    for item in items:
        rgb = read_rgb(item.image)
        if item.mask is None:
            raise DataError(f'validation split {val_dir} needs masks/ for checkpoint selection')
        mask = torch.from_numpy(read_mask(item.mask, rgb.shape[:2]))[None, None].float()
        labels.append(F.interpolate(mask, size=size, mode='nearest')[0, 0].byte())
        images.append((to_batch([rgb], size) * 255).round().byte())
    images_t, labels_t = torch.cat(images), torch.stack(labels)
    normal = images_t[(labels_t == 1).flatten(1).sum(1) == 0]
    return _Validation(images_t, labels_t, normal if len(normal) else images_t)


def _schedule(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def _progress(text: str, enabled: bool) -> None:
    """One self-overwriting status line, on terminals only (logs get the summary)."""
    if enabled and sys.stderr.isatty():
        sys.stderr.write('\r' + text.ljust(100) + ('' if text else '\r'))
        sys.stderr.flush()


def train(
    config: ModelConfig,
    images_dir: str | Path,
    out_dir: str | Path,
    outlier_dir: str | Path | None = None,
    val_dir: str | Path | None = None,
    device: str = 'cpu',
    resume: bool = False,
    progress: bool = True,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train a model and write its directory (config, weights, calibration, log).

    Args:
        config: model and training configuration; ``config.train.mode`` picks the losses.
        images_dir: folder of normal images (no labels).
        out_dir: model directory to write.
        outlier_dir: optional outlier images (and ``masks/``) to paste; procedural otherwise.
        val_dir: optional split (``images/``, ``masks/``) for checkpoint selection.
        device: torch device.
        resume: continue from ``out_dir/train_state.pt`` if present.
        progress: print a progress line to stderr.
        on_epoch: called with each epoch's log entry.
    """
    tc = config.train
    if tc.mode not in MODES:
        raise ConfigError(f'unknown training mode {tc.mode!r}; choose from {MODES}')
    if tc.alpha <= 0 or tc.temperature <= 0 or tc.inlier_margin < 0:
        raise ConfigError(
            'alpha and temperature must be positive and inlier_margin at least 0, got '
            f'{tc.alpha}, {tc.temperature} and {tc.inlier_margin}'
        )
    if not 0 < tc.paste_probability <= 1:
        raise ConfigError(f'paste_probability must be in (0, 1], got {tc.paste_probability}')
    dev = torch.device(device)
    out_dir = Path(out_dir)
    start = time.time()
    torch.manual_seed(tc.seed)
    size = tuple(config.input_size)

    model = build_model(config).to(dev)
    files = list_images(images_dir)
    order = torch.randperm(len(files), generator=torch.Generator().manual_seed(tc.seed))
    n_val = 0 if val_dir is not None else max(1, int(round(len(files) * tc.val_fraction)))
    if len(files) - n_val < 1:
        raise DataError(f'{images_dir} has {len(files)} image(s); training needs at least 2')
    all_images = _load_images(files, size)
    train_images = all_images[order[n_val:]]
    paster = PseudoOutliers(outlier_dir, size, probability=tc.paste_probability)
    val = _validation(config, all_images[order[:n_val]], val_dir, paster)

    cached = None
    if tc.mode == 'nll':
        _progress('caching backbone features', progress)
        with torch.no_grad():
            cached = torch.cat(
                [
                    model.features(_as_float(train_images[i : i + 16], dev)).half().cpu()
                    for i in range(0, len(train_images), 16)
                ]
            )

    params = list(model.flow.parameters()) + list(model.head.parameters())
    opt = torch.optim.AdamW(params, lr=tc.lr, weight_decay=tc.weight_decay)
    steps_per_epoch = math.ceil(len(train_images) / tc.batch_size)
    total = tc.epochs * steps_per_epoch
    warmup = max(1, int(tc.warmup_fraction * total))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _schedule(s, total, warmup))
    gen = torch.Generator().manual_seed(tc.seed + 2)

    result = TrainResult(best_epoch=-1, best_val_ap=-1.0)
    best_state: dict[str, torch.Tensor] | None = None
    first_epoch = 0
    state_path = out_dir / STATE_FILE
    if resume and state_path.is_file():
        try:
            state = torch.load(state_path, map_location='cpu', weights_only=True)
            load_trained_state(model, state['model'])
        except (RuntimeError, KeyError, OSError) as exc:
            raise ModelFileError(
                f'cannot resume from {state_path}: written by another version or configuration'
            ) from exc
        opt.load_state_dict(state['opt'])
        sched.load_state_dict(state['sched'])
        gen.set_state(state['gen'])
        torch.set_rng_state(state['torch_rng'])
        best_state = state['best']
        result = TrainResult(state['best_epoch'], state['best_val_ap'], state['history'])
        first_epoch = state['epoch'] + 1

    for epoch in range(first_epoch, tc.epochs):
        model.flow.train()
        perm = torch.randperm(len(train_images), generator=gen)
        sums = {'loss': 0.0, 'nll': 0.0, 'con': 0.0}
        for step in range(steps_per_epoch):
            idx = perm[step * tc.batch_size : (step + 1) * tc.batch_size]
            if cached is not None:
                feats = cached[idx].to(dev).float()
                labels = torch.zeros(len(idx), *feats.shape[-2:], dtype=torch.uint8)
            else:
                mixed, pixel_labels = paster.paste(_as_float(train_images[idx], dev).cpu(), gen)
                feats = model.features(mixed.to(dev))
                labels = grid_labels(pixel_labels, tuple(feats.shape[-2:]), tc.inlier_margin)
            labels = labels.to(dev)
            feats = feats + tc.feature_noise * torch.randn_like(feats)
            log_prob, z = model.flow.log_prob(feats)
            nll = inlier_nll(log_prob, labels, model.channels)
            loss = tc.alpha * nll
            con = torch.zeros(())
            if tc.mode == 'flowclas':
                emb = normalize_embeddings(model.head(z))
                con = pixel_contrastive(emb, labels, tc.temperature, tc.samples_per_set, gen=gen)
                loss = loss + con
            if not torch.isfinite(loss):
                raise FloatingPointError(f'loss became {loss.item()} at epoch {epoch}')
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, tc.grad_clip)
            opt.step()
            sched.step()
            sums['loss'] += loss.item()
            sums['nll'] += nll.item()
            sums['con'] += con.item()
            _progress(
                f'epoch {epoch + 1}/{tc.epochs} step {step + 1}/{steps_per_epoch} '
                f'loss {sums["loss"] / (step + 1):.4f} ({time.time() - start:.0f} s)',
                progress,
            )
        model.flow.eval()
        ap = val.ap(model, dev)
        entry = {k: v / steps_per_epoch for k, v in sums.items()}
        entry |= {'epoch': epoch, 'val_ap': ap, 'seconds': time.time() - start}
        result.history.append(entry)
        if val_dir is None or ap > result.best_val_ap:
            result.best_val_ap, result.best_epoch = ap, epoch
            # Without labelled validation the last epoch wins: the live weights are the result.
            if val_dir is not None:
                best_state = {k: v.clone() for k, v in trained_state(model).items()}
        out_dir.mkdir(parents=True, exist_ok=True)
        torch.save(
            {
                'epoch': epoch,
                'model': trained_state(model),
                'opt': opt.state_dict(),
                'sched': sched.state_dict(),
                'gen': gen.get_state(),
                'torch_rng': torch.get_rng_state(),
                'best': best_state,
                'best_epoch': result.best_epoch,
                'best_val_ap': result.best_val_ap,
                'history': result.history,
            },
            state_path,
        )
        if on_epoch is not None:
            on_epoch(entry)
    _progress('', progress)

    if best_state is not None:
        load_trained_state(model, best_state)
    model.flow.eval()
    normal_scores, normal_norms = val.maps(model, val.normal, dev)
    if not (torch.isfinite(normal_scores).all() and torch.isfinite(normal_norms).all()):
        raise FloatingPointError('non-finite scores on validation images after training')
    config.calibration = fit_calibration(normal_scores.numpy(), normal_norms.numpy())
    save_model(model, out_dir)
    result.seconds = time.time() - start
    (out_dir / LOG_FILE).write_text(
        json.dumps(
            {
                'best_epoch': result.best_epoch,
                'best_val_ap': result.best_val_ap,
                'seconds': result.seconds,
                'history': result.history,
                'images': str(images_dir),
                'outliers': None if outlier_dir is None else str(outlier_dir),
                'val': None if val_dir is None else str(val_dir),
                'n_train': len(train_images),
                'n_val': len(val.images),
            },
            indent=2,
        )
        + '\n'
    )
    return result
