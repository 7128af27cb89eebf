"""What every stage shares: its tracker (rank 0 only), the run folder it writes, and JSON written atomically.

Stages talk only through the run folder and the cache (docs/CONTRACTS.md), so any of them can be run
on its own; these helpers keep how they open a run and write a file the same everywhere.
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from llmneo.atomic import atomic_path, write_text_atomic
from llmneo.config import Config, save_config
from llmneo.data import DataSplits, describe_bad_rows, load_splits
from llmneo.tracking import tracker as tracking
from llmneo.training.distributed import is_main_process

__all__ = ["run_splits", "stage_run", "start_run_folder", "write_json"]


def write_json(path: Path, payload: Any) -> None:
    write_text_atomic(path, json.dumps(payload, indent=2, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def stage_run(config: Config, stage: str, resume: bool = False, parent_run_id: str | None = None):
    """The stage's tracker on rank 0; the other ranks of a distributed launch log nothing."""
    if not is_main_process():
        return nullcontext(tracking.NullTracker())
    return tracking.stage_run(config, stage, resume, parent_run_id)


def start_run_folder(config: Config) -> None:
    """The run folder, with the resolved config beside every output (so a run can be re-created)."""
    if not is_main_process():
        return
    config.run_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(config.run_dir / "config.yaml") as temp:
        save_config(config, temp)


def run_splits(config: Config) -> DataSplits:
    """The student's labelled data (train, dev, validation), with what was skipped or held out said once."""
    splits = load_splits(config.data, config.student.train.max_train_samples)
    for part in (splits.train, splits.dev):
        if (line := describe_bad_rows(part)) is not None:
            print(f"[data] {line}")
    if splits.validation is not None:
        print(f"[data] validation: {len(splits.validation):,} training rows choose checkpoints "
              f"({splits.train.dropped_for_validation:,} rows inside them left out of training); dev is read once")
    return splits
