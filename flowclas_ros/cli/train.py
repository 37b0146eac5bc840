# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""flowclas-train: train FlowCLAS on normal images (a folder or a bag) into a model directory."""

from __future__ import annotations

import argparse
import tempfile

from flowclas_ros.cli.common import add_backbone_args, backbone_from_args, run_tool
from flowclas_ros.core.config import REFINE_MODES, FineConfig, ModelConfig
from flowclas_ros.core.data.images import SIZE_POLICIES
from flowclas_ros.core.data.outliers import PLACEMENTS
from flowclas_ros.core.jsonio import dumps
from flowclas_ros.core.model import SCORES
from flowclas_ros.core.presets import PRESETS, preset_config
from flowclas_ros.core.train.trainer import MODES

# Flags that set one config value: dest -> dotted path in ModelConfig. Their defaults come
# from the preset (or ModelConfig), so an option left out never overrides the preset.
_CONFIG_FLAGS = {
    'epochs': 'train.epochs',
    'batch_size': 'train.batch_size',
    'lr': 'train.lr',
    'mode': 'train.mode',
    'alpha': 'train.alpha',
    'temperature': 'train.temperature',
    'inlier_margin': 'train.inlier_margin',
    'paste_probability': 'train.paste_probability',
    'paste_placement': 'train.paste_placement',
    'pasted_variants': 'train.pasted_variants',
    'max_images': 'train.max_images',
    'crop': 'train.crop',
    'seed': 'train.seed',
    'input_size': 'input_size',
    'size_policy': 'size_policy',
    'flow_steps': 'flow.steps',
    'hidden_ratio': 'flow.hidden_ratio',
    'context_window': 'context_window',
    'score': 'score',
    'score_smoothing': 'score_smoothing',
    'center_per_frame': 'center_per_frame',
    'refine': 'refine',
}


def _get(config: object, path: str) -> object:
    for key in path.split('.'):
        config = getattr(config, key)
    return config


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
    p.add_argument(
        '--preset',
        help=f'starting configuration: {", ".join(PRESETS)} or a JSON file of config.json '
        'keys; the options below override it (default: surface inspection)',
    )
    add_backbone_args(p)
    p.add_argument('--outliers', help='folder of outlier images (+ masks/) to paste')
    p.add_argument('--val', help='split (images/, masks/) for checkpoint selection')

    def flag(name: str, help: str = '', **kw: object) -> None:
        dest = name[2:].replace('-', '_')
        default = _get(d, _CONFIG_FLAGS[dest])
        p.add_argument(name, default=None, help=f'{help} (default {default})'.lstrip(), **kw)

    flag('--epochs', type=int)
    flag('--batch-size', type=int)
    flag('--lr', type=float)
    flag('--mode', choices=MODES)
    flag('--alpha', 'weight of the likelihood term', type=float)
    flag('--temperature', 'InfoNCE', type=float)
    flag('--inlier-margin', 'patches around pasted objects left out of the losses', type=int)
    flag('--paste-probability', 'share of training images that get pseudo-outliers', type=float)
    flag(
        '--paste-placement',
        'anywhere, or ground: half of the objects on the lower part of the frame',
        choices=PLACEMENTS,
    )
    flag(
        '--pasted-variants',
        'paste N fixed variants per image once instead of afresh at every step',
        type=int,
    )
    flag('--max-images', 'train on at most N evenly spaced images (0: all)', type=int)
    flag(
        '--crop', 'train the flow on random N x N windows of the feature maps (0: whole)', type=int
    )
    flag('--input-size', 'model input size', type=int, nargs=2, metavar=('H', 'W'))
    flag(
        '--size-policy',
        'native: each image at its own scale (up to --input-size pixels); '
        'keep_aspect: at that pixel count; fixed: exactly --input-size',
        choices=SIZE_POLICIES,
    )
    flag('--flow-steps', type=int)
    flag('--hidden-ratio', type=float)
    flag('--context-window', 'odd k > 1 appends a k x k local mean of the features', type=int)
    flag('--score', choices=SCORES)
    flag('--score-smoothing', 'Gaussian sigma in patches over the score map (0: off)', type=float)
    flag(
        '--center-per-frame',
        "subtract each frame's median score (scenes unlike the training frames)",
        action=argparse.BooleanOptionalAction,
    )
    flag(
        '--refine',
        'cascade: also train a fine level (EfficientNet-Lite0 stride 8) whose detail sharpens '
        'masks where the coarse map fires',
        choices=REFINE_MODES,
    )
    flag('--seed', type=int)
    p.add_argument('--device', default='cpu', help='cpu, cuda, cuda:N or auto')
    p.add_argument(
        '--resume', action='store_true', help='continue an interrupted run (train_state.pt)'
    )
    p.add_argument('--overwrite', action='store_true', help='replace a model already in --out')
    p.add_argument('--quiet', action='store_true', help='no progress line')
    return p


def config_from_args(args: argparse.Namespace) -> ModelConfig:
    """The preset (or the defaults) with every option that was given laid over it."""
    config = preset_config(args.preset) if args.preset else ModelConfig()
    config.backbone = backbone_from_args(args, base=config.backbone)
    for dest, path in _CONFIG_FLAGS.items():
        value = getattr(args, dest)
        if value is not None:
            *parents, key = path.split('.')
            owner = _get(config, '.'.join(parents)) if parents else config
            setattr(owner, key, list(value) if isinstance(value, tuple | list) else value)
    if config.refine == 'cascade' and config.fine is None:
        config.fine = FineConfig()
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
        print(dumps(summary))
        return 0

    return run_tool('flowclas-train', body)


if __name__ == '__main__':
    raise SystemExit(main())
