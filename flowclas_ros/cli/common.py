# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""What every tool shares: user errors as one line and a non-zero exit, not a traceback."""

from __future__ import annotations

from collections.abc import Callable
import sys

from flowclas_ros.core.errors import FlowclasError


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
