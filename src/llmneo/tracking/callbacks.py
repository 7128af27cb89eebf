"""The ``transformers.Trainer`` callback that sends per-step metrics to a tracker."""

from __future__ import annotations

import time
from typing import Any

from transformers import TrainerCallback

__all__ = ["MetricsCallback"]


class MetricsCallback(TrainerCallback):
    """Per-step metrics from a ``transformers.Trainer``: eval metrics, loss, learning rate, throughput.

    Only the main process logs (``state.is_world_process_zero``), with ``state.global_step`` as the
    step. Throughput is training examples per second of training time between two logging events:
    time spent in evaluation or checkpointing falls between steps and is not counted.
    """

    def __init__(self, tracker: Any) -> None:
        self.tracker = tracker
        self._step_started: float | None = None
        self._train_seconds = 0.0  # since the last logging event
        self._steps = 0

    def on_step_begin(self, args, state, control, **kwargs):
        self._step_started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if self._step_started is not None:
            self._train_seconds += time.perf_counter() - self._step_started
            self._steps += 1
            self._step_started = None

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if state.is_world_process_zero and metrics:
            self.tracker.log_metrics(metrics, step=state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        # eval_* keys reach on_log too; on_evaluate has logged them already
        values = {key: value for key, value in logs.items() if not key.startswith("eval_")}
        if self._steps and self._train_seconds > 0:
            per_step = args.train_batch_size * args.gradient_accumulation_steps * max(args.world_size, 1)
            values["train_examples_per_second"] = self._steps * per_step / self._train_seconds
            self._steps, self._train_seconds = 0, 0.0
        self.tracker.log_metrics(values, step=state.global_step)
