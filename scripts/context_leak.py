# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""How far a pasted object's score reaches: each frame scored clean and with one object pasted.

Encoders with global attention (DINOv2) let an object change every token of its frame. This
pastes one pseudo-outlier (the model's own paste settings) into each of ``--n`` normal frames
and compares the raw score maps cell by cell: the rise inside the object, and the rise of the
cells more than ``--far`` network pixels from it, both in units of the clean map's standard
deviation. Per-frame centring is switched off, so a frame-wide shift shows.

    python scripts/context_leak.py --model m --images normal_frames --n 30
"""

from __future__ import annotations

import argparse
import statistics

import torch
import torch.nn.functional as F

from flowclas_ros.core.data.images import list_images, read_rgb
from flowclas_ros.core.data.outliers import PseudoOutliers
from flowclas_ros.core.flowclas.model import load_model
from flowclas_ros.core.inference import Detector


def _cells(mask: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """A pixel mask ``(H, W)`` sampled at the centres of a ``shape`` grid's cells."""
    rows = ((torch.arange(shape[0]) + 0.5) * mask.shape[0] / shape[0]).long()
    cols = ((torch.arange(shape[1]) + 0.5) * mask.shape[1] / shape[1]).long()
    return mask[rows][:, cols]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('--model', required=True)
    p.add_argument('--images', required=True)
    p.add_argument('--n', type=int, default=30, help='frames, evenly spaced')
    p.add_argument('--far', type=int, default=64, help='network pixels from the object')
    p.add_argument('--seed', type=int, default=0)
    args = p.parse_args()
    model = load_model(args.model, None, 'cpu')
    model.config.center_per_frame = False
    tc = model.config.train
    paster = PseudoOutliers(
        None, tuple(model.config.input_size), 1, 1.0, tc.paste_scales, tc.paste_placement
    )
    detector = Detector(model)
    files = list_images(args.images)
    files = files[:: max(1, len(files) // args.n)][: args.n]
    gen = torch.Generator().manual_seed(args.seed)
    inside, far_median, far_p99 = [], [], []
    with torch.no_grad():
        for path in files:
            clean = detector.preprocess(read_rgb(path))
            mixed, label = paster.paste(clean, gen)
            a = model.maps(clean)[0][0]
            b = model.maps(mixed)[0][0]
            pasted = label[0] > 0
            near = F.max_pool2d(pasted[None, None].float(), 2 * args.far + 1, 1, args.far)
            obj, far = _cells(pasted, a.shape), ~_cells(near[0, 0] > 0, a.shape)
            if not obj.any() or not far.any():
                continue
            spread = float(a.std())
            inside.append(float((b[obj] - a[obj]).median()) / spread)
            far_median.append(float(b[far].median() - a[far].median()) / spread)
            far_p99.append(float(b[far].quantile(0.99) - a[far].quantile(0.99)) / spread)
    print(f'{len(inside)} frames; medians over frames, in clean-map standard deviations:')
    print(f'  rise inside the object          {statistics.median(inside):+.3f}')
    print(f'  rise of the far cells (median)  {statistics.median(far_median):+.3f}')
    print(f'  rise of the far cells (p99)     {statistics.median(far_p99):+.3f}')


if __name__ == '__main__':
    main()
