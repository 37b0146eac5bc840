# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""What every tool shares: one-line errors, and the options that name a model and a device.

A user error is one line and a non-zero exit, not a traceback.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
import sys
from typing import TYPE_CHECKING

from flowclas_ros.core.errors import FlowclasError

if TYPE_CHECKING:
    from flowclas_ros.core.model import FlowClasModel


def add_model_args(p: argparse.ArgumentParser, model_help: str) -> None:
    """``--model`` (required), ``--weights`` and ``--device``, read by ``load_model_arg``."""
    p.add_argument('--model', required=True, help=model_help)
    p.add_argument('--weights', help='override the backbone checkpoint path in the model')
    p.add_argument('--device', default='cpu', help='cpu, cuda, cuda:N or auto')


def load_model_arg(args: argparse.Namespace) -> FlowClasModel:
    from flowclas_ros.core.device import resolve_device
    from flowclas_ros.core.model import load_model

    return load_model(args.model, args.weights, resolve_device(args.device))


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
