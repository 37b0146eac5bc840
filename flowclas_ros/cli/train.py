# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""flowclas-train: train FlowCLAS on normal images (a folder or a bag) into a model directory."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
import tempfile
import typing
from typing import Any

from flowclas_ros.cli.common import (
    add_backbone_args,
    add_device_arg,
    backbone_from_args,
    run_tool,
)
from flowclas_ros.core.config import (
    REFINE_MODES,
    THRESHOLD_ON,
    TRAIN_MODES,
    FineConfig,
    FlowConfig,
    ModelConfig,
    TrainConfig,
)
from flowclas_ros.core.data.images import SIZE_POLICIES
from flowclas_ros.core.data.outliers import PLACEMENTS
from flowclas_ros.core.flowclas.model import SCORES
from flowclas_ros.core.jsonio import dumps
from flowclas_ros.core.presets import PRESETS, preset_config

# The config values this tool sets are the fields marked with ``_option`` in core.config, by
# dotted path; the names they may take, and how --input-size is shown, are added here.
_SECTIONS = (('train.', TrainConfig), ('flow.', FlowConfig), ('', ModelConfig))
_CHOICES = {
    'train.mode': TRAIN_MODES,
    'train.threshold_on': THRESHOLD_ON,
    'train.paste_placement': PLACEMENTS,
    'size_policy': SIZE_POLICIES,
    'score': SCORES,
    'refine': REFINE_MODES,
}
_METAVARS = {'input_size': ('H', 'W'), 'train.input_size': ('H', 'W')}


@dataclass(frozen=True)
class _ConfigOption:
    """One option that sets one config value; its default comes from the preset."""

    flag: str
    path: str
    kind: Any
    help: str

    @property
    def dest(self) -> str:
        return self.flag[2:].replace('-', '_')


def _config_options() -> list[_ConfigOption]:
    """Every config field marked as an option, in the order of the config's sections."""
    out = []
    for prefix, section in _SECTIONS:
        hints = typing.get_type_hints(section)
        for f in dataclasses.fields(section):
            if 'help' in f.metadata:
                flag = f.metadata['flag'] or '--' + f.name.replace('_', '-')
                out.append(_ConfigOption(flag, prefix + f.name, hints[f.name], f.metadata['help']))
    return out


def _get(config: object, path: str) -> object:
    for key in path.split('.'):
        config = getattr(config, key)
    return config


def _argparse_kwargs(option: _ConfigOption) -> dict[str, Any]:
    """How argparse reads an option of this annotated type."""
    if option.kind is bool:
        return {'action': argparse.BooleanOptionalAction}
    kw: dict[str, Any] = {'choices': _CHOICES.get(option.path)}
    if typing.get_origin(option.kind) is list:
        item = typing.get_args(option.kind)[0]
        metavar = _METAVARS.get(option.path)
        return kw | {'type': item, 'nargs': len(metavar), 'metavar': metavar}
    return kw | ({} if option.kind is str else {'type': option.kind})


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
    for option in _config_options():
        # None: an option left out never overrides the preset; the help shows the default.
        text = f'{option.help} (default {_get(d, option.path)})'.lstrip()
        p.add_argument(option.flag, default=None, help=text, **_argparse_kwargs(option))
    add_device_arg(p)
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
    for option in _config_options():
        value = getattr(args, option.dest)
        if value is not None:
            *parents, key = option.path.split('.')
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
        from flowclas_ros.core.flowclas.train.trainer import TrainOptions, train

        options = TrainOptions(
            outlier_dir=args.outliers,
            val_dir=args.val,
            device=resolve_device(args.device),
            resume=args.resume,
            overwrite=args.overwrite,
        )
        result = train(config_from_args(args), images, args.out, options, progress=not args.quiet)
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
