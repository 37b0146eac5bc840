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
"""

from __future__ import annotations

from collections.abc import Callable
import copy
from dataclasses import dataclass, field
import io
import math
import os
from pathlib import Path
import shutil
import sys
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from flowclas_ros.core.config import Calibration, ModelConfig, TrainConfig
from flowclas_ros.core.data.images import (
    IGNORE_LABEL,
    list_images,
    list_split,
    network_size,
    read_mask,
    read_rgb,
    to_batch,
)
from flowclas_ros.core.data.outliers import PseudoOutliers
from flowclas_ros.core.errors import ConfigError, DataError, ModelFileError
from flowclas_ros.core.jsonio import write_atomic, write_json
from flowclas_ros.core.losses import inlier_nll, normalize_embeddings, pixel_contrastive
from flowclas_ros.core.metrics import exact_pixel_metrics
from flowclas_ros.core.model import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    FlowClasModel,
    build_model,
    load_trained_state,
    save_model,
    trained_state,
)
from flowclas_ros.core.scoring import fit_calibration
from flowclas_ros.core.train.batching import as_float, by_size, cosine_schedule, each_image
from flowclas_ros.core.train.fine import fit_level_stats, train_fine

STATE_FILE = 'train_state.pt'
LOG_FILE = 'train_log.json'
MODES = ('flowclas', 'nll')
MIN_IMAGES = 20  # fewer trains, with a warning


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


def _sized(rgb: np.ndarray, config: ModelConfig, multiple: int) -> torch.Tensor:
    """uint8 ``(3, h, w)`` at the image's network size (uint8 holds large folders in memory)."""
    size = network_size(*rgb.shape[:2], config.input_size, config.size_policy, multiple)
    return (to_batch([rgb], size) * 255).round().byte()[0]


class _Validation:
    """Fixed validation images and pixel labels, scored each epoch for checkpoint choice.

    Their features are computed at the first epoch and kept: the backbone is frozen.
    """

    def __init__(
        self, images: list[torch.Tensor], labels: list[torch.Tensor], normal: list[torch.Tensor]
    ) -> None:
        self.images = images
        self.labels = labels
        self.normal = normal  # clean normal images for calibration
        self.features: list[torch.Tensor] = []

    def ap(self, model: FlowClasModel, device: torch.device) -> float:
        if not self.features:
            self.features = _clean_features(model, self.images, device)
        scores: list[torch.Tensor] = [torch.empty(0)] * len(self.features)
        with torch.no_grad():
            for group in by_size(list(range(len(self.features))), self.features, 8):
                feats = torch.stack([self.features[i] for i in group]).to(device).float()
                for k, s in zip(group, model.patch_maps(feats)[0], strict=True):
                    scores[k] = s.cpu()
        grids = [
            grid_labels(y[None], tuple(s.shape))[0]
            for s, y in zip(scores, self.labels, strict=True)
        ]
        flat = torch.cat([s.flatten() for s in scores]).numpy()
        return float(
            exact_pixel_metrics(flat, torch.cat([g.flatten() for g in grids]).numpy())['ap']
        )


def _validation(
    config: ModelConfig,
    held_out: list[torch.Tensor],
    val_dir: str | Path | None,
    paster: PseudoOutliers,
    multiple: int,
) -> _Validation:
    if val_dir is None:
        if not held_out:
            raise DataError('no images left for validation; add images or pass --val')
        gen = torch.Generator().manual_seed(config.train.seed + 1)
        images, labels = [], []
        for image in held_out:
            mixed, label = paster.paste(as_float(image[None], torch.device('cpu')), gen)
            images.append((mixed[0] * 255).round().byte())
            labels.append(label[0])
        return _Validation(images, labels, held_out)
    images, labels = [], []
    for item in list_split(val_dir):
        if item.mask is None:
            raise DataError(f'validation split {val_dir} needs masks/ for checkpoint selection')
        rgb = read_rgb(item.image)
        image = _sized(rgb, config, multiple)
        mask = torch.from_numpy(read_mask(item.mask, rgb.shape[:2]))[None, None].float()
        labels.append(F.interpolate(mask, size=image.shape[-2:], mode='nearest')[0, 0].byte())
        images.append(image)
    normal = [x for x, y in zip(images, labels, strict=True) if not (y == 1).any()]
    return _Validation(images, labels, normal or images)


def _progress(text: str, enabled: bool) -> None:
    """One self-overwriting status line, on terminals only (logs get the summary)."""
    if enabled and sys.stderr.isatty():
        sys.stderr.write('\r' + text.ljust(100) + ('' if text else '\r'))
        sys.stderr.flush()


def _check_settings(tc: TrainConfig) -> None:
    if tc.mode not in MODES:
        raise ConfigError(f'unknown training mode {tc.mode!r}; choose from {MODES}')
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


def _clean_features(
    model: FlowClasModel, images: list[torch.Tensor], device: torch.device
) -> list[torch.Tensor]:
    """Backbone features of every training image, once, in half precision on the host.

    The backbone is frozen, so only images that get pseudo-outliers pasted need it again.
    """
    return each_image(lambda x: model.features(x).half(), images, device)


def _paste_from(
    data: _Data, group: list[int], gen: torch.Generator, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features and patch labels of ``group``: each image clean or, by chance, pasted.

    Pasted features come from the fixed variants when there are any (no backbone call), else
    the backbone runs on images pasted now.
    """
    model, tc = data.model, data.model.config.train
    feats = torch.stack([data.cache[i] for i in group]).to(device).float()
    grid = torch.zeros(len(group), *feats.shape[-2:], dtype=torch.uint8)
    if tc.mode != 'flowclas':
        return feats, grid
    if data.pasted:
        for j, i in enumerate(group):
            if float(torch.rand((), generator=gen)) < tc.paste_probability:
                f, g = data.pasted[int(torch.randint(len(data.pasted), (), generator=gen))][i]
                feats[j], grid[j] = f.to(device).float(), g
        return feats, grid
    clean = as_float(torch.stack([data.train_images[i] for i in group]), torch.device('cpu'))
    mixed, pixel_labels = data.paster.paste(clean, gen)
    pasted = (pixel_labels == 1).flatten(1).any(1)
    if pasted.any():
        feats[pasted.to(device)] = model.features(mixed[pasted].to(device))
        grid = grid_labels(pixel_labels, tuple(feats.shape[-2:]), tc.inlier_margin)
    return feats, grid


def _crop(
    feats: torch.Tensor, grid: torch.Tensor, side: int, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """A ``side`` x ``side`` window of each map (whole maps when ``side`` is 0 or larger).

    An image with pasted patches gets a window around one of them, so the contrastive term
    still sees its outliers.
    """
    h, w = feats.shape[-2:]
    if side <= 0 or (side >= h and side >= w):
        return feats, grid
    ch, cw = min(side, h), min(side, w)
    out_f, out_g = [], []
    for f, g in zip(feats, grid, strict=True):
        y0 = int(torch.randint(h - ch + 1, (), generator=gen))
        x0 = int(torch.randint(w - cw + 1, (), generator=gen))
        hits = (g == 1).nonzero()
        if len(hits):
            py, px = hits[int(torch.randint(len(hits), (), generator=gen))].tolist()
            y0 = min(max(y0, py - ch + 1), py, h - ch)
            x0 = min(max(x0, px - cw + 1), px, w - cw)
        out_f.append(f[:, y0 : y0 + ch, x0 : x0 + cw])
        out_g.append(g[y0 : y0 + ch, x0 : x0 + cw])
    return torch.stack(out_f), torch.stack(out_g)


def _losses(
    data: _Data, batch: list[int], gen: torch.Generator, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Likelihood and contrastive terms of one batch, pooled over its image sizes."""
    model, tc = data.model, data.model.config.train
    log_probs, labels, embeddings = [], [], []
    for group in by_size(batch, data.train_images):
        feats, grid = _crop(*_paste_from(data, group, gen, device), tc.crop, gen)
        feats = feats + tc.feature_noise * torch.randn_like(feats)
        log_prob, z = model.flow.log_prob(feats)
        log_probs.append(log_prob.flatten())
        labels.append(grid.flatten())
        if tc.mode == 'flowclas':
            emb = normalize_embeddings(model.head(z))
            embeddings.append(emb.permute(0, 2, 3, 1).reshape(-1, emb.shape[1]))
    label = torch.cat(labels).to(device)
    nll = inlier_nll(torch.cat(log_probs), label, model.channels)
    if not embeddings:
        return nll, torch.zeros((), device=device)
    # One row of patches: the losses only need each patch's embedding and label.
    emb = torch.cat(embeddings).T[None, :, None, :]
    con = pixel_contrastive(emb, label[None, None], tc.temperature, tc.samples_per_set, gen=gen)
    return nll, con


def _workspace(out_dir: Path, resume: bool, overwrite: bool) -> tuple[Path, Path | None]:
    """The staging folder to train in, and the checkpoint to resume from (if any).

    A model directory is only ever replaced whole (``_publish``), so an existing model is
    refused unless ``overwrite`` or ``resume`` says what to do with it.
    """
    work = out_dir.with_name(f'.{out_dir.name}.partial')
    has_model = (out_dir / CONFIG_FILE).is_file() or (out_dir / WEIGHTS_FILE).is_file()
    if out_dir.exists() and not out_dir.is_dir():
        raise ModelFileError(f'{out_dir} exists and is not a directory')
    if out_dir.is_dir() and not has_model and any(out_dir.iterdir()):
        raise ModelFileError(f'{out_dir} is not empty and holds no model; choose a new --out')
    if not resume:
        if has_model and not overwrite:
            raise ModelFileError(
                f'{out_dir} already holds a model: pass --overwrite to replace it or --resume '
                'to continue its training'
            )
        if work.exists():
            raise ModelFileError(
                f'an interrupted run left {work}: pass --resume to continue it, or remove it'
            )
        return work, None
    for state in (work / STATE_FILE, out_dir / STATE_FILE):
        if state.is_file():
            return work, state
    if has_model:
        raise ModelFileError(f'nothing to resume: no {STATE_FILE} for {out_dir}')
    return work, None


def _publish(work: Path, out_dir: Path) -> None:
    """Move the finished staging folder to ``out_dir``, replacing an older model whole.

    Readers see the old model, briefly none, then the new one: never a mix of the two.
    """
    if not out_dir.exists():
        os.replace(work, out_dir)
        return
    old = out_dir.with_name(f'.{out_dir.name}.old')
    if old.exists():  # left by a crash between the two renames below
        shutil.rmtree(old)
    os.replace(out_dir, old)
    os.replace(work, out_dir)
    shutil.rmtree(old)


@dataclass
class _Data:
    """Training images at their network sizes, their cached features, and validation.

    ``pasted[v][i]``: features and patch labels of image ``i`` with pasted variant ``v``.
    """

    model: FlowClasModel
    train_images: list[torch.Tensor]
    cache: list[torch.Tensor]
    paster: PseudoOutliers
    val: _Validation
    pasted: list[list[tuple[torch.Tensor, torch.Tensor]]]


def _pasted_variants(
    model: FlowClasModel, images: list[torch.Tensor], paster: PseudoOutliers
) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
    """``train.pasted_variants`` pasted copies of every image: features (half) and labels."""
    tc = model.config.train
    out = []
    for v in range(tc.pasted_variants if tc.mode == 'flowclas' else 0):
        gen = torch.Generator().manual_seed(tc.seed + 3 + v)
        variant: list[tuple[torch.Tensor, torch.Tensor]] = [(torch.empty(0),) * 2] * len(images)
        for group in by_size(list(range(len(images))), images, 8):
            clean = as_float(torch.stack([images[i] for i in group]), torch.device('cpu'))
            mixed, pixel_labels = paster.paste(clean, gen, probability=1.0)
            feats = model.features(mixed.to(model.device))
            grid = grid_labels(pixel_labels, tuple(feats.shape[-2:]), tc.inlier_margin)
            for k, i in enumerate(group):
                variant[i] = (feats[k].half().cpu(), grid[k])
        out.append(variant)
    return out


def _evenly(files: list[Path], limit: int) -> list[Path]:
    """At most ``limit`` (0: all) of ``files``, evenly spaced."""
    if limit <= 0 or len(files) <= limit:
        return files
    return [files[i * len(files) // limit] for i in range(limit)]


def _load_data(
    model: FlowClasModel,
    images_dir: str | Path,
    outlier_dir: str | Path | None,
    val_dir: str | Path | None,
    progress: bool,
) -> _Data:
    """Read and size the images, hold some out (without ``val_dir``), cache clean features."""
    config, tc = model.config, model.config.train
    multiple = model.backbone.size_multiple
    files = _evenly(list_images(images_dir), tc.max_images)
    order = torch.randperm(len(files), generator=torch.Generator().manual_seed(tc.seed)).tolist()
    n_val = 0 if val_dir is not None else max(1, int(round(len(files) * tc.val_fraction)))
    if len(files) - n_val < 1:
        raise DataError(f'{images_dir} has {len(files)} image(s); training needs at least 2')
    if len(files) < MIN_IMAGES:
        warnings.warn(
            f'only {len(files)} training images in {images_dir}: the model will know little '
            f'of what is normal (use {MIN_IMAGES} or more)',
            stacklevel=3,
        )
    images = [_sized(read_rgb(path), config, multiple) for path in files]
    train_images = [images[i] for i in order[n_val:]]
    paster = PseudoOutliers(
        outlier_dir,
        tuple(config.input_size),
        probability=tc.paste_probability,
        scales=tc.paste_scales,
        placement=tc.paste_placement,
    )
    val = _validation(config, [images[i] for i in order[:n_val]], val_dir, paster, multiple)
    _progress('caching backbone features', progress)
    cache = _clean_features(model, train_images, model.device)
    pasted = _pasted_variants(model, train_images, paster)
    return _Data(model, train_images, cache, paster, val, pasted)


class _Optimization:
    """Optimizer, schedule, sampling generator and the run's record: what a checkpoint holds."""

    def __init__(self, model: FlowClasModel, n_train: int) -> None:
        tc = model.config.train
        self.params = list(model.flow.parameters()) + list(model.head.parameters())
        self.opt = torch.optim.AdamW(self.params, lr=tc.lr, weight_decay=tc.weight_decay)
        self.steps_per_epoch = math.ceil(n_train / tc.batch_size)
        total = tc.epochs * self.steps_per_epoch
        warmup = max(1, int(tc.warmup_fraction * total))
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: cosine_schedule(s, total, warmup)
        )
        self.gen = torch.Generator().manual_seed(tc.seed + 2)
        self.result = TrainResult(best_epoch=-1, best_val_ap=-1.0)
        self.best: dict[str, torch.Tensor] | None = None
        self.first_epoch = 0
        self.model = model

    def restore(self, path: Path) -> None:
        try:
            state = torch.load(path, map_location='cpu', weights_only=True)
            load_trained_state(self.model, state['model'])
        except (RuntimeError, KeyError, OSError) as exc:
            raise ModelFileError(
                f'cannot resume from {path}: written by another version or configuration'
            ) from exc
        self.opt.load_state_dict(state['opt'])
        self.sched.load_state_dict(state['sched'])
        self.gen.set_state(state['gen'])
        torch.set_rng_state(state['torch_rng'])
        self.best = state['best']
        self.result = TrainResult(state['best_epoch'], state['best_val_ap'], state['history'])
        self.first_epoch = state['epoch'] + 1

    def end_epoch(self, entry: dict[str, float], keep_best: bool) -> None:
        """Log the epoch; with labelled validation keep the best weights, else the last win."""
        self.result.history.append(entry)
        if not keep_best or entry['val_ap'] > self.result.best_val_ap:
            self.result.best_val_ap, self.result.best_epoch = entry['val_ap'], entry['epoch']
            if keep_best:
                self.best = {k: v.clone() for k, v in trained_state(self.model).items()}

    def save(self, path: Path, epoch: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        torch.save(
            {
                'epoch': epoch,
                'model': trained_state(self.model),
                'opt': self.opt.state_dict(),
                'sched': self.sched.state_dict(),
                'gen': self.gen.get_state(),
                'torch_rng': torch.get_rng_state(),
                'best': self.best,
                'best_epoch': self.result.best_epoch,
                'best_val_ap': self.result.best_val_ap,
                'history': self.result.history,
            },
            buffer,
        )
        write_atomic(path, buffer.getvalue())


def _train_epoch(
    model: FlowClasModel,
    data: _Data,
    state: _Optimization,
    epoch: int,
    start: float,
    progress: bool,
) -> dict[str, float]:
    """One pass over the training images, then the validation AP; the epoch's log entry."""
    tc, dev = model.config.train, model.device
    model.flow.train()
    perm = torch.randperm(len(data.train_images), generator=state.gen).tolist()
    sums = {'loss': 0.0, 'nll': 0.0, 'con': 0.0}
    for step in range(state.steps_per_epoch):
        batch = perm[step * tc.batch_size : (step + 1) * tc.batch_size]
        nll, con = _losses(data, batch, state.gen, dev)
        loss = tc.alpha * nll + con
        if not torch.isfinite(loss):
            raise FloatingPointError(f'loss became {loss.item()} at epoch {epoch}')
        state.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(state.params, tc.grad_clip)
        state.opt.step()
        state.sched.step()
        sums['loss'] += loss.item()
        sums['nll'] += nll.item()
        sums['con'] += con.item()
        _progress(
            f'epoch {epoch + 1}/{tc.epochs} step {step + 1}/{state.steps_per_epoch} '
            f'loss {sums["loss"] / (step + 1):.4f} ({time.time() - start:.0f} s)',
            progress,
        )
    model.flow.eval()
    entry = {k: v / state.steps_per_epoch for k, v in sums.items()}
    return entry | {
        'epoch': epoch,
        'val_ap': data.val.ap(model, dev),
        'seconds': time.time() - start,
    }


def _calibration(
    model: FlowClasModel, normal: list[torch.Tensor], device: torch.device
) -> Calibration:
    """The score scale and mask-rule tables, fitted on clean held-out normal images."""
    model.flow.eval()
    scores, norms = [], []
    with torch.no_grad():
        for image in normal:  # one by one: a cascade's scores and norms differ in grid
            s, n = model.maps(as_float(image[None], device))
            scores.append(s[0].cpu())
            norms.append(n[0].cpu())
    if not all(
        torch.isfinite(s).all() and torch.isfinite(n).all()
        for s, n in zip(scores, norms, strict=True)
    ):
        raise FloatingPointError('non-finite scores on validation images after training')
    return fit_calibration([s.numpy() for s in scores], [n.numpy() for n in norms])


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
    overwrite: bool = False,
) -> TrainResult:
    """Train a model and write its directory (config, weights, calibration, log).

    Training runs in a staging folder beside ``out_dir`` (``.<name>.partial``, which also
    holds the checkpoint for ``resume``) that replaces ``out_dir`` only when complete.

    Args:
        config: model and training configuration; ``config.train.mode`` picks the losses.
        images_dir: folder of normal images (no labels).
        out_dir: model directory to write.
        outlier_dir: optional outlier images (and ``masks/``) to paste; procedural otherwise.
        val_dir: optional split (``images/``, ``masks/``) for checkpoint selection.
        device: torch device.
        resume: continue an interrupted run (or the trained model's last epoch).
        progress: print a progress line to stderr.
        on_epoch: called with each epoch's log entry.
        overwrite: replace a model already in ``out_dir`` (otherwise an error).
    """
    config = copy.deepcopy(config)  # calibration and hashes are filled in; not the caller's
    _check_settings(config.train)
    dev = torch.device(device)
    out_dir = Path(out_dir)
    work, resume_from = _workspace(out_dir, resume, overwrite)
    start = time.time()
    torch.manual_seed(config.train.seed)
    model = build_model(config).to(dev)
    data = _load_data(model, images_dir, outlier_dir, val_dir, progress)
    state = _Optimization(model, len(data.train_images))
    if resume_from is not None:
        state.restore(resume_from)
    for epoch in range(state.first_epoch, config.train.epochs):
        entry = _train_epoch(model, data, state, epoch, start, progress)
        state.end_epoch(entry, keep_best=val_dir is not None)
        state.save(work / STATE_FILE, epoch)
        if on_epoch is not None:
            on_epoch(entry)
    _progress('', progress)
    if state.best is not None:
        load_trained_state(model, state.best)
    fine_history = train_fine(model, data.train_images) if model.fine is not None else []
    if model.fine is not None:
        fit_level_stats(model, data.val.normal)
    model.config.calibration = _calibration(model, data.val.normal, dev)
    save_model(model, work)
    state.result.seconds = time.time() - start
    write_json(
        work / LOG_FILE,
        {
            'best_epoch': state.result.best_epoch,
            'best_val_ap': state.result.best_val_ap,
            'seconds': state.result.seconds,
            'history': state.result.history,
            'fine_nll': fine_history,
            'images': str(images_dir),
            'outliers': None if outlier_dir is None else str(outlier_dir),
            'val': None if val_dir is None else str(val_dir),
            'n_train': len(data.train_images),
            'n_val': len(data.val.images),
        },
    )
    _publish(work, out_dir)
    return state.result
