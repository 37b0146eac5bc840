# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""flowclas-train: train FlowCLAS on normal images (a folder or a bag) into a model directory."""

from __future__ import annotations

import argparse
import json
import tempfile

from flowclas_ros.cli.common import add_backbone_args, backbone_from_args, run_tool
from flowclas_ros.core.config import ModelConfig
from flowclas_ros.core.data.images import SIZE_POLICIES


def parser() -> argparse.ArgumentParser:
    d = ModelConfig()
    p = argparse.ArgumentParser(prog='flowclas-train', description=__doc__)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument('--images', help='folder of normal (inlier) images')
    source.add_argument('--bag', help="a bag of the robot's own camera stream (normal scenes)")
    p.add_argument('--topic', help='image topic in --bag')
    p.add_argument('--every', type=int, default=1, help='--bag: keep every N-th frame')
    p.add_argument('--max-frames', type=int, help='--bag: keep at most this many frames')
    p.add_argument('--out', required=True, help='model directory to write')
    add_backbone_args(p)
    p.add_argument('--outliers', help='folder of outlier images (+ masks/) to paste')
    p.add_argument('--val', help='split (images/, masks/) for checkpoint selection')
    p.add_argument('--epochs', type=int, default=d.train.epochs)
    p.add_argument('--batch-size', type=int, default=d.train.batch_size)
    p.add_argument('--lr', type=float, default=d.train.lr)
    p.add_argument('--mode', choices=('flowclas', 'nll'), default=d.train.mode)
    p.add_argument(
        '--alpha', type=float, default=d.train.alpha, help='weight of the likelihood term'
    )
    p.add_argument('--temperature', type=float, default=d.train.temperature, help='InfoNCE')
    p.add_argument(
        '--inlier-margin',
        type=int,
        default=d.train.inlier_margin,
        help='patches around pasted objects left out of the losses',
    )
    p.add_argument(
        '--paste-probability',
        type=float,
        default=d.train.paste_probability,
        help='share of training images that get pseudo-outliers',
    )
    p.add_argument('--input-size', type=int, nargs=2, metavar=('H', 'W'), help='model input size')
    p.add_argument(
        '--size-policy',
        choices=SIZE_POLICIES,
        default=d.size_policy,
        help='native: each image at its own scale (up to --input-size pixels); '
        'keep_aspect: at that pixel count; fixed: exactly --input-size',
    )
    p.add_argument('--flow-steps', type=int, default=d.flow.steps)
    p.add_argument('--hidden-ratio', type=float, default=d.flow.hidden_ratio)
    p.add_argument(
        '--context-window',
        type=int,
        default=d.context_window,
        help='odd k > 1 appends a k x k local mean of the features (0: off)',
    )
    p.add_argument('--score', choices=('nll', 'latent'), default=d.score)
    p.add_argument(
        '--score-smoothing',
        type=float,
        default=d.score_smoothing,
        help='Gaussian sigma in patches over the score map (0: off)',
    )
    p.add_argument('--seed', type=int, default=d.train.seed)
    p.add_argument('--device', default='cpu', help='cpu, cuda, cuda:N or auto')
    p.add_argument(
        '--resume', action='store_true', help='continue an interrupted run (train_state.pt)'
    )
    p.add_argument('--overwrite', action='store_true', help='replace a model already in --out')
    p.add_argument('--quiet', action='store_true', help='no progress line')
    return p


def config_from_args(args: argparse.Namespace) -> ModelConfig:
    config = ModelConfig()
    config.backbone = backbone_from_args(args)
    if args.input_size is not None:
        config.input_size = list(args.input_size)
    elif args.backbone.startswith('dinov2'):
        config.input_size = [448, 448]
    t = config.train
    t.epochs, t.batch_size, t.lr, t.mode, t.seed = (
        args.epochs,
        args.batch_size,
        args.lr,
        args.mode,
        args.seed,
    )
    t.alpha, t.temperature = args.alpha, args.temperature
    t.inlier_margin, t.paste_probability = args.inlier_margin, args.paste_probability
    config.size_policy = args.size_policy
    config.flow.steps = args.flow_steps
    config.flow.hidden_ratio = args.hidden_ratio
    config.context_window = args.context_window
    config.score_smoothing = args.score_smoothing
    config.score = args.score
    return config


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)

    def body() -> int:
        if args.bag:
            return _train_from_bag()
        return _train(args.images)

    def _train_from_bag() -> int:
        from flowclas_ros.core.data.bags import extract_frames
        from flowclas_ros.core.errors import DataError

        if not args.topic:
            raise DataError('--bag needs --topic (the camera image topic)')
        with tempfile.TemporaryDirectory(prefix='flowclas-frames-') as folder:
            written, bad = extract_frames(
                args.bag, args.topic, folder, args.every, args.max_frames
            )
            print(f'training on {written} frames of {args.topic} ({bad} undecodable skipped)')
            return _train(folder)

    def _train(images: str) -> int:
        from flowclas_ros.core.device import resolve_device
        from flowclas_ros.core.train.trainer import train

        config = config_from_args(args)
        result = train(
            config,
            images,
            args.out,
            outlier_dir=args.outliers,
            val_dir=args.val,
            device=resolve_device(args.device),
            resume=args.resume,
            progress=not args.quiet,
            overwrite=args.overwrite,
        )
        summary = {
            'model': args.out,
            'best_epoch': result.best_epoch,
            'best_val_ap': round(result.best_val_ap, 4),
            'seconds': round(result.seconds, 1),
        }
        print(json.dumps(summary))
        return 0

    return run_tool('flowclas-train', body)


if __name__ == '__main__':
    raise SystemExit(main())
