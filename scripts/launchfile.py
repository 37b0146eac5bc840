# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""The launch file's plain-Python parts (``launch`` does not install from PyPI), compiled here.

For the tests and for the benches, which give their camera what the launch file gives the node.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

LAUNCH = Path(__file__).resolve().parents[1] / 'launch' / 'flowclas.launch.py'
SHIPPED_PROFILE = LAUNCH.parents[1] / 'config' / 'fastdds_large_frames.xml'


def launch_parts(names: tuple[str, ...]) -> dict:
    """The top-level functions and assignments called ``names``, run in a fresh namespace."""
    tree = ast.parse(LAUNCH.read_text())
    wanted = [
        n
        for n in tree.body
        if getattr(n, 'name', None) in names
        or any(getattr(t, 'id', None) in names for t in getattr(n, 'targets', []))
    ]
    namespace: dict = {}
    exec(compile(ast.Module(body=wanted, type_ignores=[]), str(LAUNCH), 'exec'), namespace)  # noqa: S102
    return namespace


def launch_fastdds_env(choice: str | None = None) -> dict[str, str]:
    """What the launch file gives the node for ``fastdds_profile`` ``choice`` (None: default)."""
    parts = launch_parts(('ARGUMENTS', '_fastdds_env', '_FAST_DDS_2_DISTROS'))
    choice = parts['ARGUMENTS']['fastdds_profile'][0] if choice is None else choice
    return parts['_fastdds_env'](choice, str(SHIPPED_PROFILE), os.environ.get('ROS_DISTRO', ''))
