# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Where a run trains and how its model directory appears: staged, then replaced whole.

Training runs in a staging folder beside the model directory (``.<name>.partial``, which also
holds the checkpoint to resume from) that replaces the directory only when complete, so
readers never see half a model or a mix of two.
"""

from __future__ import annotations

import os
from pathlib import Path
import shutil

from flowclas_ros.core.errors import ModelFileError
from flowclas_ros.core.flowclas.model import CONFIG_FILE, WEIGHTS_FILE

STATE_FILE = 'train_state.pt'
LOG_FILE = 'train_log.json'


def workspace(out_dir: Path, resume: bool, overwrite: bool) -> tuple[Path, Path | None]:
    """The staging folder to train in, and the checkpoint to resume from (if any).

    A model directory is only ever replaced whole (``publish``), so an existing model is
    refused unless ``overwrite`` or ``resume`` says what to do with it.
    """
    work = out_dir.with_name(f'.{out_dir.name}.partial')
    has_model = (out_dir / CONFIG_FILE).is_file() or (out_dir / WEIGHTS_FILE).is_file()
    if out_dir.exists() and not out_dir.is_dir():
        raise ModelFileError(f'{out_dir} exists and is not a directory')
    if out_dir.is_dir() and not has_model and any(out_dir.iterdir()):
        raise ModelFileError(f'{out_dir} is not empty and holds no model; choose a new --out')
    if not resume:
        if has_model and not overwrite:
            raise ModelFileError(
                f'{out_dir} already holds a model: pass --overwrite to replace it or --resume '
                'to continue its training'
            )
        if work.exists():
            raise ModelFileError(
                f'an interrupted run left {work}: pass --resume to continue it, or remove it'
            )
        return work, None
    for state in (work / STATE_FILE, out_dir / STATE_FILE):
        if state.is_file():
            return work, state
    if has_model:
        raise ModelFileError(f'nothing to resume: no {STATE_FILE} for {out_dir}')
    return work, None


def publish(work: Path, out_dir: Path) -> None:
    """Move the finished staging folder to ``out_dir``, replacing an older model whole.

    Readers see the old model, briefly none, then the new one: never a mix of the two.
    """
    if not out_dir.exists():
        os.replace(work, out_dir)
        return
    old = out_dir.with_name(f'.{out_dir.name}.old')
    if old.exists():  # left by a crash between the two renames below
        shutil.rmtree(old)
    os.replace(out_dir, old)
    os.replace(work, out_dir)
    shutil.rmtree(old)
