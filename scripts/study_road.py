# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Choose road settings cheaply: backbone features cached once, flows trained from the cache.

The frozen backbone is most of a training's time on a CPU; the flow and its losses are not.
This computes, once per backbone/size/paste setting, the training images' clean features, one
pasted variant of each and the dev splits' features (cached in ``--cache``), then trains a
fresh flow with the product's own FlowCLAS training step for each ``--variant`` and seed and
prints the dev metrics (AP, AUROC, FPR95, oracle mask mIoU) as one JSON line per run.

    python scripts/study_road.py --images CAMVID NUSCENES --dev DEV_A DEV_B --preset road \
        --set train.max_images=240 --variant '{}' '{"train": {"alpha": 1}}' --seeds 0 1

``--set`` changes what is cached (backbone, input size, paste settings); ``--variant`` only
what the flow trains with (flow, losses, epochs, paste probability, crop).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
from pathlib import Path
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

from flowclas_ros.core.config import Calibration, ModelConfig
from flowclas_ros.core.data.frames import split_frames
from flowclas_ros.core.evaluate import _Masks, _metrics
from flowclas_ros.core.flowclas.model import (
    QUARTER_SHIFTS,
    build_model,
    interleave,
    load_trained_state,
    shift,
    trained_state,
    upsample,
)
from flowclas_ros.core.flowclas.refine import frame_superpixels, with_segments
from flowclas_ros.core.flowclas.scoring import frame_median
from flowclas_ros.core.flowclas.train.batching import clean_features, training_size
from flowclas_ros.core.flowclas.train.data import TrainData, load_data
from flowclas_ros.core.flowclas.train.optim import Optimization
from flowclas_ros.core.flowclas.train.trainer import train_epoch
from flowclas_ros.core.flowclas.train.validation import Validation
from flowclas_ros.core.inference import Detector
from flowclas_ros.core.jsonio import dumps, write_atomic
from flowclas_ros.core.masks import MaskRule
from flowclas_ros.core.presets import _merge, preset_config

# What the flow trains with, and what happens after it: none of it enters the cached features.
CACHED_TRAIN_KEYS = (
    'epochs', 'lr', 'alpha', 'temperature', 'paste_probability', 'crop', 'threshold_on',
)  # fmt: skip
# What only scoring reads: a variant of these scores the base's flow.
SCORING_KEYS = ('score', 'score_smoothing', 'center_per_frame')


def _parse_set(items: list[str]) -> dict:
    out: dict = {}
    for item in items:
        key, value = item.split('=', 1)
        node = out
        *parents, last = key.split('.')
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = json.loads(value)
    return out


def _digest(key: object) -> str:
    """A short file-name key for ``key`` (JSON-able): a cache file per distinct setting."""
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def _as_trained(config: ModelConfig) -> dict:
    """``config`` as training sees it: at its training size, on one grid (names older caches)."""
    d = config.to_dict()
    d['input_size'] = training_size(config)
    d['grid_shifts'] = 1
    del d['train']['input_size']
    return d


def _cache_key(config: ModelConfig, images: list[str]) -> str:
    d = _as_trained(config)
    train = {k: v for k, v in d['train'].items() if k not in CACHED_TRAIN_KEYS}
    return _digest([d['backbone'], d['input_size'], d['size_policy'], d['context_window'], train,
                    images])  # fmt: skip


def _flow_key(config: ModelConfig, base: ModelConfig, images: list[str]) -> str:
    """A flow file's name, from what trains it: scoring-only settings take the base's values.

    ``primary_weight`` only shares the scores out, so any value above 0 names the same flows
    (and 0 the names saved before it existed).
    """
    d, b = _as_trained(config), _as_trained(base)
    d.update({k: b[k] for k in SCORING_KEYS})
    if d.pop('primary_weight'):
        d['primary_flow'] = True
    return _digest([d, images])


def _train_data(config: ModelConfig, images: list[str], cache: Path) -> dict:
    """The trainer's images and cached features as plain tensors, computed once per setting."""
    path = cache / f'train_{_cache_key(config, images)}.pt'
    if not path.is_file():
        model = build_model(config)
        with tempfile.TemporaryDirectory() as tmp:
            for folder in images:  # one folder of links: the trainer reads one
                for f in sorted(Path(folder).iterdir()):
                    (Path(tmp) / f'{Path(folder).name}_{f.name}').symlink_to(f.resolve())
            data = load_data(model, tmp, None, None, progress=False)
        val = data.val
        saved = {
            'train_images': data.train_images,
            'cache': data.cache,
            'pasted': data.pasted,
            'val': [val.images, val.labels, val.normal],
            'val_features': clean_features(model, val.images, model.device),
        }
        write_atomic(path, _tensor_bytes(saved))
    return torch.load(path, weights_only=True)


def _fresh(config: ModelConfig, saved: dict) -> TrainData:
    """A new model (flow initialised from ``config``) over the cached data."""
    val = Validation(*saved['val'])
    val.features = saved['val_features']
    model = build_model(config)
    return TrainData(model, saved['train_images'], saved['cache'], None, val, saved['pasted'])


def _tensor_bytes(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _dev_features(config: ModelConfig, split: str, cache: Path) -> list[torch.Tensor]:
    """Each frame's features ``(G, C, h, w)``, one per grid ``FlowClasModel.maps`` scores."""
    d = config.to_dict()
    key = [d['backbone'], d['input_size'], d['size_policy'], split]
    if config.grid_shifts > 1:  # keeps the one-grid caches' names
        key.append(config.grid_shifts)
    path = cache / f'dev_{_digest(key)}.pt'
    if path.is_file():
        return [f if f.dim() == 4 else f[None] for f in torch.load(path, weights_only=True)]
    model = build_model(config)
    detector = Detector(model)
    step = model.backbone.stride // 4
    shifts = QUARTER_SHIFTS if config.grid_shifts > 1 else ((0, 0),)
    with torch.no_grad():
        feats = []
        for f in split_frames(split)():
            x = detector.preprocess(f.rgb)
            grids = torch.cat([shift(x, dy * step, dx * step) for dy, dx in shifts])
            feats.append(model.features(grids).half())
    write_atomic(path, _tensor_bytes(feats))
    return feats


def _post(m: torch.Tensor, mode: str) -> torch.Tensor:
    """A label-free per-frame rescaling of one patch map (``raw``: none)."""
    mode, *extra = mode.split('+')
    for step in extra:
        if step.startswith('max'):  # a k x k maximum filter: object borders take the object's
            k = int(step[3:])
            m = F.max_pool2d(m[None, None], k, 1, k // 2)[0, 0]
    if mode == 'raw':
        return m
    centred = m - frame_median(m[None])[0]
    if mode == 'robust_z':
        centred = centred / frame_median(centred.abs()[None])[0].clamp(min=1e-6)
    for step in extra:
        if step.startswith('rows'):  # each row less its q-th percentile (rowsup: only above 0)
            up = step.startswith('rowsup')
            q = int(step[6 if up else 4 :] or 50) / 100
            row = centred.quantile(q, dim=1, keepdim=True)
            centred = centred - (row.clamp(min=0) if up else row)
    return centred


def _dev_metrics(model, split: str, feats: list[torch.Tensor], post: str) -> dict:  # noqa: ANN001
    with torch.no_grad():
        maps = []
        for f in feats:  # each grid post-processed alone, as the product centres each
            grids = torch.stack([_post(m, post) for m in model.patch_maps(f.float())[0]])
            maps.append(interleave(grids)[0] if len(grids) > 1 else grids[0])
    lo = min(float(m.min()) for m in maps)
    hi = max(float(m.max()) for m in maps)

    def scored():  # noqa: ANN202
        for m, frame in zip(maps, split_frames(split)(), strict=True):
            full = upsample(m[None], frame.shape)[0]
            if post.endswith('+slic'):  # as flowclas-eval --segments superpixels
                full = with_segments(full, frame_superpixels(frame.rgb))
            yield frame, full.numpy().astype(np.float64), None

    calibration = Calibration()
    out = _metrics(scored, lo, hi, calibration, _Masks(MaskRule(), calibration, None), None)
    row = {k: round(out[k], 4) for k in ('ap', 'auroc', 'fpr95')}
    row['oracle_miou'] = round(out['masks']['oracle']['miou'], 4)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('--images', nargs='+', required=True)
    p.add_argument('--dev', nargs='+', required=True)
    p.add_argument('--preset', default='road')
    p.add_argument('--set', nargs='*', default=[], help='KEY=JSON laid over the preset')
    p.add_argument('--variant', nargs='*', default=['{}'], help='JSON laid over the config')
    p.add_argument('--seeds', type=int, nargs='+', default=[0])
    p.add_argument('--cache', default='/tmp/study_road')
    p.add_argument('--threads', type=int, default=0)
    p.add_argument(
        '--post',
        nargs='+',
        default=['raw'],
        help='raw, median or robust_z, then optionally +maxK, +rowsQ or +rowsupQ, +slic',
    )
    p.add_argument('--reuse', action='store_true', help='load flows saved by an earlier run')
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    base = ModelConfig.from_dict(
        _merge(preset_config(args.preset).to_dict(), _parse_set(args.set))
    )
    saved_data = _train_data(base, args.images, cache)
    dev = {s: _dev_features(base, s, cache) for s in args.dev}
    for variant in args.variant:
        for seed in args.seeds:
            over = json.loads(variant)
            over.setdefault('flow', {})['seed'] = seed
            config = ModelConfig.from_dict(_merge(base.to_dict(), over))
            config.train.seed = seed
            torch.manual_seed(seed)
            data = _fresh(config, saved_data)
            model = data.model
            start = time.time()
            # Keyed on what training sees: variants share the feature cache, not their flows.
            flow_file = cache / f'flow_{_flow_key(config, base, args.images)}.pt'
            if args.reuse and flow_file.is_file():
                load_trained_state(model, torch.load(flow_file, weights_only=True))
            else:
                state = Optimization(model, len(data.train_images))
                for epoch in range(config.train.epochs):
                    train_epoch(model, data, state, epoch, start, False)
                write_atomic(flow_file, _tensor_bytes(trained_state(model)))
            model.train_flows(False)
            row = {'variant': json.loads(variant), 'seed': seed}
            row['seconds'] = round(time.time() - start)
            for post in args.post:
                for split in args.dev:
                    row[f'{Path(split).parent.name}/{post}'] = _dev_metrics(
                        model, split, dev[split], post
                    )
            print(dumps(row), flush=True)


if __name__ == '__main__':
    main()
