# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Benchmark (not a test): NFA mask time for one frame's token grid.

Usage: python scripts/bench_nfa.py [--grid 32] [--dof 432] [--repeats 200]
Times ``nfa_mask`` on chi-square latent norms with one planted anomalous block (so regions are
selected and labelled, as on a real defect), and prints the median and 95th percentile.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from flowclas_ros.core.jsonio import dumps
from flowclas_ros.core.thresholds.nfa import nfa_mask


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('--grid', type=int, default=32)
    p.add_argument('--dof', type=int, default=432, help='latent channels (EfficientNet-Lite0)')
    p.add_argument('--repeats', type=int, default=200)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    g = args.grid
    times, found = [], 0
    for _ in range(args.repeats):
        z = rng.standard_normal((args.dof, g, g)).astype(np.float32)
        z[:, g // 4 : g // 2, g // 3 : g // 2] *= 1.5
        q = (z.astype(np.float64) ** 2).sum(axis=0)
        start = time.perf_counter()
        found += int(nfa_mask(q, args.dof).any())
        times.append(time.perf_counter() - start)
    ms = np.array(times) * 1e3
    result = {
        'grid': f'{g}x{g}',
        'dof': args.dof,
        'repeats': args.repeats,
        'median_ms': round(float(np.median(ms)), 2),
        'p95_ms': round(float(np.percentile(ms, 95)), 2),
        'frames_with_detection': found,
    }
    print(dumps(result))


if __name__ == '__main__':
    main()
