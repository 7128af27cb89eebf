"""What bounds and resumes a training run: atomic checkpoints, the time cap, and a schedule on the clock.

Trainer callbacks and a learning-rate factor, apart from the trainer so that each stays small: a
checkpoint is trusted only with its completion marker; a time cap counts wall time or CPU time (the
latter gives runs on a shared machine the same compute); the schedule can span the cap itself; the
budget spent travels with each checkpoint, so a resumed run finishes the cap and the schedule it began
rather than starting both again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import TrainerCallback

__all__ = [
    "BUDGET_RECORD",
    "COMPLETE_MARKER",
    "BudgetSpent",
    "CheckpointCompleteMarker",
    "ProgressLines",
    "TimeBudgetSchedule",
    "WallClockLimit",
    "budget_clock",
    "last_complete_checkpoint",
]


COMPLETE_MARKER = ".complete"
BUDGET_RECORD = "budget_spent.json"


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


class BudgetSpent(TrainerCallback):
    """Seconds of a time budget spent so far, on its clock, by this training in all its runs.

    A process killed after a checkpoint resumes with the seconds that checkpoint recorded: the cap and the
    clock-driven schedule then go on where they were, instead of granting the run a second full budget and a
    second warm-up. Each checkpoint gets the figure in `budget_spent.json`, written before its marker."""

    def __init__(self, clock: Callable[[], float], spent_before: float = 0.0):
        self.clock, self.spent_before = clock, spent_before
        self.started: float | None = None

    @classmethod
    def resumed_from(cls, clock: Callable[[], float], checkpoint: str | None) -> BudgetSpent:
        record = Path(checkpoint) / BUDGET_RECORD if checkpoint else None
        if record is None or not record.is_file():
            if checkpoint:
                print(f"[resume] {checkpoint} has no {BUDGET_RECORD}: the time budget counts from zero")
            return cls(clock)
        return cls(clock, float(json.loads(record.read_text())["seconds"]))

    def seconds(self) -> float:
        return self.spent_before + (self.clock() - self.started if self.started is not None else 0.0)

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = self.clock()
        return control

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if state.is_world_process_zero and folder.is_dir():
            (folder / BUDGET_RECORD).write_text(json.dumps({"seconds": self.seconds()}))
        return control


class ProgressLines(TrainerCallback):
    """Training progress as plain lines for a log (stderr not a terminal, where tqdm's bar would redraw itself
    into kilobytes of carriage returns): a line at most every `every_s` seconds, and one per evaluation."""

    def __init__(self, role: str, every_s: float = 30.0, budget_minutes: float | None = None,
                 spent: BudgetSpent | None = None):
        self.role, self.every_s = role, every_s
        self.budget_minutes, self.spent = budget_minutes, spent  # a time cap ends the run, not its step count
        self.started = self.last = 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = self.last = time.monotonic()
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        now = time.monotonic()
        if "loss" in (logs or {}) and now - self.last >= self.every_s:
            self.last = now
            done, total = state.global_step, state.max_steps
            elapsed = now - self.started
            if self.budget_minutes and self.spent is not None:
                spent = self.spent.seconds() / 60
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

    def __init__(self, minutes: float, spent: BudgetSpent):
        self.seconds = minutes * 60
        self.spent = spent

    def on_step_end(self, args, state, control, **kwargs):
        if self.spent.seconds() > self.seconds:
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

    def __init__(self, budget_seconds: float, warmup_share: float, spent: Callable[[], float]):
        self.budget, self.warmup, self.spent = budget_seconds, warmup_share, spent

    def __call__(self) -> float:
        share = min(self.spent() / self.budget, 1.0)
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
