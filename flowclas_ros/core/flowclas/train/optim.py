# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Optimisation state of a training run: optimizer, schedule, sampling generator and record.

It is exactly what a checkpoint holds, so a resumed run continues with the same steps, the
same random draws and the same choice of epoch as one that was never interrupted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import io
import math
from pathlib import Path

import torch

from flowclas_ros.core.errors import ModelFileError
from flowclas_ros.core.flowclas.model import FlowClasModel, load_trained_state, trained_state
from flowclas_ros.core.flowclas.train.batching import cosine_schedule
from flowclas_ros.core.jsonio import write_atomic


@dataclass
class TrainResult:
    """The kept epoch, its validation AP, every epoch's log entry and the run's time."""

    best_epoch: int
    best_val_ap: float
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


class Optimization:
    """Optimizer, schedule, sampling generator and the run's record: what a checkpoint holds."""

    def __init__(self, model: FlowClasModel, n_train: int) -> None:
        tc = model.config.train
        self.clip_groups = [
            [*flow.parameters(), *head.parameters()] for flow, head, _ in model.densities()
        ]
        self.params = [p for group in self.clip_groups for p in group]
        self.opt = torch.optim.AdamW(self.params, lr=tc.lr, weight_decay=tc.weight_decay)
        self.steps_per_epoch = math.ceil(n_train / tc.batch_size)
        total = tc.epochs * self.steps_per_epoch
        warmup = max(1, int(tc.warmup_fraction * total))
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: cosine_schedule(s, total, warmup)
        )
        self.gen = torch.Generator().manual_seed(tc.seed + 2)
        self.result = TrainResult(best_epoch=-1, best_val_ap=-1.0)
        self.best: dict[str, torch.Tensor] | None = None
        self.first_epoch = 0
        self.model = model

    def restore(self, path: Path) -> None:
        """Continue from the checkpoint at ``path`` (written by ``save``)."""
        try:
            state = torch.load(path, map_location='cpu', weights_only=True)
            load_trained_state(self.model, state['model'])
        except (RuntimeError, KeyError, OSError) as exc:
            raise ModelFileError(
                f'cannot resume from {path}: written by another version or configuration'
            ) from exc
        self.opt.load_state_dict(state['opt'])
        self.sched.load_state_dict(state['sched'])
        self.gen.set_state(state['gen'])
        torch.set_rng_state(state['torch_rng'])
        self.best = state['best']
        self.result = TrainResult(state['best_epoch'], state['best_val_ap'], state['history'])
        self.first_epoch = state['epoch'] + 1

    def end_epoch(self, entry: dict[str, float], keep_best: bool) -> None:
        """Log the epoch; with labelled validation keep the best weights, else the last win."""
        self.result.history.append(entry)
        if not keep_best or entry['val_ap'] > self.result.best_val_ap:
            self.result.best_val_ap, self.result.best_epoch = entry['val_ap'], entry['epoch']
            if keep_best:
                self.best = {k: v.clone() for k, v in trained_state(self.model).items()}

    def save(self, path: Path, epoch: int) -> None:
        """Write the checkpoint after ``epoch`` atomically (a crash leaves the previous one)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        torch.save(
            {
                'epoch': epoch,
                'model': trained_state(self.model),
                'opt': self.opt.state_dict(),
                'sched': self.sched.state_dict(),
                'gen': self.gen.get_state(),
                'torch_rng': torch.get_rng_state(),
                'best': self.best,
                'best_epoch': self.result.best_epoch,
                'best_val_ap': self.result.best_val_ap,
                'history': self.result.history,
            },
            buffer,
        )
        write_atomic(path, buffer.getvalue())
