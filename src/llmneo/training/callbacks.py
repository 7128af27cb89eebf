"""What bounds and resumes a training run: atomic checkpoints, the time cap, and a schedule on the clock.

Trainer callbacks and a learning-rate factor, apart from the trainer so that each stays small: a
checkpoint is trusted only with its completion marker; a time cap counts wall time or CPU time (the
latter gives runs on a shared machine the same compute); the schedule can span the cap itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from transformers import TrainerCallback

__all__ = [
    "COMPLETE_MARKER",
    "CheckpointCompleteMarker",
    "DevLogitsByStep",
    "TimeBudgetSchedule",
    "WallClockLimit",
    "budget_clock",
    "last_complete_checkpoint",
]


COMPLETE_MARKER = ".complete"


class CheckpointCompleteMarker(TrainerCallback):
    """Marks a checkpoint folder complete once Trainer has written all of it.

    Trainer writes `checkpoint-N/` file by file; a process killed mid-save leaves a folder that
    `get_last_checkpoint` would trust. `on_save` runs after the save, so the marker makes the
    checkpoint atomic from the point of view of `--resume`.
    """

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir():
                (folder / COMPLETE_MARKER).write_text(str(state.global_step))
        return control


def budget_clock(kind: str) -> Callable[[], float]:
    """Seconds for a time budget. `cpu` is this process's CPU time over its torch threads: on an idle
    machine it runs at wall-clock speed, on a shared one it slows down with the share of the cores the
    process gets, so a budget buys the same compute either way."""
    if kind == "wall":
        return time.perf_counter
    threads = torch.get_num_threads()
    return lambda: time.process_time() / threads


class DevLogitsByStep(TrainerCallback):
    """The dev logits and loss of every evaluation, by step. Training ends with the weights of an evaluated
    step (the last: Trainer evaluates the final step; or, with keep_best, the best), so the final report
    can reuse that evaluation rather than pass over dev again: for a 110M teacher on CPU, 12 s a stage."""

    def __init__(self):
        self.by_step: dict[int, tuple[np.ndarray, float | None]] = {}
        self._pending: np.ndarray | None = None

    def record(self, logits: np.ndarray) -> None:
        """Called by compute_metrics, which does not know the step; on_evaluate, next, does."""
        self._pending = logits

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if self._pending is not None:
            self.by_step[state.global_step] = (self._pending, (metrics or {}).get("eval_loss"))
            self._pending = None
        return control

    def final(self, state, keep_best: bool) -> tuple[np.ndarray, float | None] | None:
        """Dev logits and loss of the weights training ended with, if this process evaluated them."""
        step = state.best_global_step if keep_best and state.best_global_step else state.global_step
        return self.by_step.get(step)


class WallClockLimit(TrainerCallback):
    """Stops training once `minutes` have passed on `clock`, with one last evaluation and save.

    An ablation compares arms under the same time cap rather than the same number of steps:
    a cheaper loss or a smaller set may use its time for more epochs.
    """

    def __init__(self, minutes: float, clock: Callable[[], float] = time.perf_counter):
        self.seconds = minutes * 60
        self.clock = clock
        self.started: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = self.clock()
        return control

    def on_step_end(self, args, state, control, **kwargs):
        if self.started is not None and self.clock() - self.started > self.seconds:
            print(f"[train] time limit of {self.seconds / 60:.1f} min reached at step {state.global_step}")
            control.should_training_stop = True
            control.should_evaluate = True
            control.should_save = True
        return control


class TimeBudgetSchedule:
    """Learning-rate factor from the share of a wall-clock budget spent: linear warm-up, linear decay.

    Not reproducible step for step (it reads the clock), which is the point: every run under the same
    budget ends with a fully decayed rate, however fast its steps were.
    """

    def __init__(self, budget_seconds: float, warmup_share: float, clock: Callable[[], float] = time.perf_counter):
        self.budget, self.warmup, self.clock = budget_seconds, warmup_share, clock
        self.started = clock()

    def __call__(self) -> float:
        share = min((self.clock() - self.started) / self.budget, 1.0)
        if share < self.warmup:
            return max(share / self.warmup, 1e-3)
        return max(1.0 - share, 0.0) / (1.0 - self.warmup)


def last_complete_checkpoint(checkpoint_dir: Path) -> str | None:
    """The newest checkpoint with its completion marker; unfinished newer ones are reported."""
    if not checkpoint_dir.is_dir():
        return None
    found = sorted((p for p in checkpoint_dir.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
                   key=lambda p: int(p.name.split("-")[-1]), reverse=True)
    for folder in found:
        if (folder / COMPLETE_MARKER).is_file():
            return str(folder)
        print(f"[resume] ignoring unfinished checkpoint {folder}")
    return None
