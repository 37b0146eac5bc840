# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Study the cascade's gate and weight, and region consistency, on one trained cascade model.

Each frame's coarse and fine maps are computed once; every variant is then scored from them.
Only calibration-free metrics are printed (AP, AUROC, FPR95, mean per-class AUROC and the
oracle mask mIoU at the best single threshold), so no variant needs its own calibration.

    python scripts/study_refine.py --model M --data SPLIT --gates 0 1 2 3 --weights 0.5 1 2
    python scripts/study_refine.py --model M --data SPLIT --fine-smoothing 0.5 1 --normal TRAIN
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable

import numpy as np
import torch

from flowclas_ros.core.data.frames import split_frames
from flowclas_ros.core.data.images import list_images, read_rgb
from flowclas_ros.core.evaluate import _Masks, _metrics
from flowclas_ros.core.flowclas.model import load_model
from flowclas_ros.core.flowclas.refine import (
    fit_stats,
    region_consistency,
    standardize,
    superpixels,
)
from flowclas_ros.core.flowclas.scoring import upsample
from flowclas_ros.core.inference import Detector
from flowclas_ros.core.jsonio import dumps
from flowclas_ros.core.masks import MaskRule


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('--model', required=True)
    p.add_argument('--data', required=True)
    p.add_argument('--gates', type=float, nargs='+', default=[2.0])
    p.add_argument('--weights', type=float, nargs='+', default=[1.0])
    p.add_argument('--segments', type=int, nargs='*', default=[], help='SLIC segment counts')
    p.add_argument(
        '--fine-smoothing', type=float, nargs='*', default=[],
        help="fine-level sigmas to compare (default: the model's), each z-scaled on --normal",
    )  # fmt: skip
    p.add_argument(
        '--normal',
        help='normal images to refit the fine z-scale on (for a bank, not the ones it was drawn '
        'from)',
    )
    p.add_argument('--normal-every', type=int, default=10, help='every Nth of --normal')
    args = p.parse_args()
    if args.fine_smoothing and not args.normal:
        p.error('--fine-smoothing needs --normal')
    model = load_model(args.model, device='cpu')
    if model.fine is None:
        raise SystemExit('the model has no fine level (train it with --refine cascade)')
    detector = Detector(model)
    frames = split_frames(args.data)
    c = model.config.fine

    def fine_maps(rgbs: Iterable[np.ndarray]) -> list[torch.Tensor]:
        return [model.fine.scores(model.fine.features(detector.preprocess(x)))[0] for x in rgbs]

    with torch.no_grad():
        coarse = [
            model.patch_maps(model.features(detector.preprocess(f.rgb)))[0] for f in frames()
        ]
        coarse = [standardize(m, c.coarse) for m in coarse]
        fine = {}  # each fine smoothing's z-scored maps
        for sigma in args.fine_smoothing or [c.smoothing]:
            c.smoothing = sigma
            stats = c.fine
            if args.fine_smoothing:  # the z-scale refitted as training does, on normal images
                normal = list_images(args.normal)[:: args.normal_every]
                stats = fit_stats([m.numpy() for m in fine_maps(map(read_rgb, normal))])
            fine[sigma] = [standardize(m, stats) for m in fine_maps(f.rgb for f in frames())]
    levels = {
        sigma: [(upsample(a, b.shape[-2:])[0], b) for a, b in zip(coarse, maps, strict=True)]
        for sigma, maps in fine.items()
    }
    slic = {
        n: [
            superpixels(torch.from_numpy(f.rgb.copy()).permute(2, 0, 1).float() / 255, n)
            for f in frames()
        ]
        for n in args.segments
    }

    first = next(iter(levels))

    def run(name: str, fuse, segments=None, sigma=first) -> None:  # noqa: ANN001
        maps = [fuse(c, f) for c, f in levels[sigma]]

        def scored():  # noqa: ANN202
            for i, (m, frame) in enumerate(zip(maps, frames(), strict=True)):
                full = upsample(m[None], frame.shape)[0]
                if segments is not None:
                    full = region_consistency(full, segments[i])
                yield frame, full.numpy().astype(np.float64), None

        lo = min(float(m.min()) for m in maps)
        hi = max(float(m.max()) for m in maps)
        calibration = model.config.calibration
        out = _metrics(scored, lo, hi, calibration, _Masks(MaskRule(), calibration, None), None)
        row = {k: round(out[k], 4) for k in ('ap', 'auroc', 'fpr95', 'mean_per_class_auroc')}
        row['oracle_miou'] = round(out['masks']['oracle']['miou'], 4)
        print(dumps({'variant': name} | row), flush=True)

    run('coarse', lambda c, f: c)
    for sigma in levels:
        for gate in args.gates:
            for w in args.weights:
                run(
                    f'cascade gate {gate} weight {w} fine smoothing {sigma}',
                    lambda c, f, g=gate, w=w: torch.where(c > g, c + w * f.clamp(min=0), c),
                    sigma=sigma,
                )
    for n, segments in slic.items():
        run(f'coarse + region consistency (SLIC {n})', lambda c, f: c, segments)
        g = model.config.fine.gate
        run(
            f'cascade gate {g} + region consistency (SLIC {n})',
            lambda c, f, g=g: torch.where(c > g, c + f.clamp(min=0), c),
            segments,
        )


if __name__ == '__main__':
    main()
