"""What bounds and resumes a training run: atomic checkpoints, the time cap, and a schedule on the clock.

Trainer callbacks and a learning-rate factor, apart from the trainer so that each stays small: a
checkpoint is trusted only with its completion marker; a time cap counts wall time or CPU time (the
latter gives runs on a shared machine the same compute); the schedule can span the cap itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import TrainerCallback

__all__ = [
    "COMPLETE_MARKER",
    "CheckpointCompleteMarker",
    "ProgressLines",
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


class ProgressLines(TrainerCallback):
    """Training progress as plain lines for a log (stderr not a terminal, where tqdm's bar would redraw itself
    into kilobytes of carriage returns): a line at most every `every_s` seconds, and one per evaluation."""

    def __init__(self, role: str, every_s: float = 30.0, budget_minutes: float | None = None,
                 clock: Callable[[], float] = time.perf_counter):
        self.role, self.every_s = role, every_s
        self.budget_minutes, self.clock = budget_minutes, clock  # a time cap ends the run, not its step count
        self.started = self.last = self.clock_started = 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = self.last = time.monotonic()
        self.clock_started = self.clock()
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        now = time.monotonic()
        if "loss" in (logs or {}) and now - self.last >= self.every_s:
            self.last = now
            done, total = state.global_step, state.max_steps
            elapsed = now - self.started
            if self.budget_minutes:
                spent = (self.clock() - self.clock_started) / 60
                where = f"step {done:,}, {spent:.1f} of {self.budget_minutes:g} budget minutes"
            else:
                left = f", about {elapsed / max(done, 1) * (total - done) / 60:.1f} min left" if total > done else ""
                where = f"step {done:,}/{total:,} ({done / max(total, 1):.0%}), {elapsed / 60:.1f} min{left}"
            print(f"[{self.role}] {where}, loss {logs['loss']:.4f}", flush=True)
        return control

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        figures = ", ".join(f"{key.removeprefix('eval_')} {value:.4f}" for key, value in (metrics or {}).items()
                            if key in ("eval_accuracy", "eval_f1_macro", "eval_agreement"))
        print(f"[{self.role}] step {state.global_step:,}: {figures}", flush=True)
        return control


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
