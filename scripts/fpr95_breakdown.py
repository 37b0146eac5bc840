# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""What sets a model's FPR95 on a labelled split: the objects it misses and where it fires.

FPR95 is the share of normal pixels scoring at or above the 5th percentile of the anomalous
pixels' scores. This scores the split as ``flowclas-eval`` does and prints that threshold, the
ground-truth objects (connected regions of label 1) holding the anomalous pixels below it,
largest share first, and where the normal pixels above it lie: in frames with no anomaly at
all, and by band of image rows. Weak borders spread over many objects call for a finer map;
a few whole objects missed call for better features or pseudo-outliers.

    python scripts/fpr95_breakdown.py --model m --data dev/fs_static_val/test
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy import ndimage

from flowclas_ros.core.data.frames import split_frames
from flowclas_ros.core.errors import FlowclasError
from flowclas_ros.core.evaluate import evaluate
from flowclas_ros.core.flowclas.model import load_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('--model', required=True)
    p.add_argument('--data', required=True, help='split folder with images/ and masks/')
    p.add_argument('--top', type=int, default=10, help='objects listed')
    p.add_argument('--bands', type=int, default=5, help='bands of image rows')
    args = p.parse_args()
    try:  # split_frames refuses a split without masks/
        ev = evaluate(load_model(args.model, None, 'cpu'), split_frames(args.data))
    except FlowclasError as e:
        raise SystemExit(f'fpr95_breakdown.py: error: {e}') from None
    frames = [(f.name, s, f.mask) for f, s, _ in ev.scored()]
    t = float(np.quantile(np.concatenate([s[m == 1] for _, s, m in frames]), 0.05))
    objects, fp_free, bands = [], 0, np.zeros(args.bands)
    for name, s, m in frames:
        regions, n = ndimage.label(m == 1)
        for k in range(1, n + 1):
            inside = s[regions == k]
            objects.append((int((inside < t).sum()), inside.size, name, float(np.median(inside))))
        rows = np.nonzero((s >= t) & (m == 0))[0]
        bands += np.bincount(rows * args.bands // s.shape[0], minlength=args.bands)
        fp_free += len(rows) if n == 0 else 0
    missed = sum(o[0] for o in objects)
    print(f'AP {ev.metrics["ap"]:.4f}  FPR95 {ev.metrics["fpr95"]:.4f}  threshold {t:.4f}')
    print(f'{len(objects)} objects; the {missed} anomalous pixels below the threshold lie in:')
    for below, size, name, median in sorted(objects, reverse=True)[: args.top]:
        print(
            f'  frame {name}: {below / missed:6.1%} of them; object of {size} px, '
            f'{below / size:.0%} of it below, median score {median:.3f}'
        )
    free = sum(1 for *_, m in frames if not (m == 1).any())
    shares = ' '.join(f'{b:.0%}' for b in bands / bands.sum())
    print(
        f'normal pixels above it: {fp_free / bands.sum():.1%} in the {free} frames with no '
        f'anomaly; by band of rows, top first: {shares}'
    )


if __name__ == '__main__':
    main()
