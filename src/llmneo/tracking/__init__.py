"""Experiment tracking in MLflow.

``store`` (the leaf: where runs go, experiments, one-shot runs), ``tracker`` (the runs of the
pipeline's stages), ``callbacks`` (the Trainer callback), ``runlog`` (what a run folder logs),
``registry`` (the student as a registered pyfunc model), ``server`` (``llmneo ui``).

The names below are re-exported lazily, so that ``import llmneo.tracking.store`` (the server, the
benchmark) does not import MLflow's run machinery or transformers.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "MlflowTracker": "tracker",
    "NullTracker": "tracker",
    "RunTerminated": "tracker",
    "Tracker": "tracker",
    "pipeline_run": "tracker",
    "run_tags": "tracker",
    "stage_run": "tracker",
    "log_stage_outputs": "runlog",
    "resolve_tracking_uri": "store",
    "default_tracking_uri": "store",
}

__all__ = [
    "MlflowTracker",
    "NullTracker",
    "RunTerminated",
    "Tracker",
    "default_tracking_uri",
    "log_stage_outputs",
    "pipeline_run",
    "resolve_tracking_uri",
    "run_tags",
    "stage_run",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'llmneo.tracking' has no attribute {name!r}")
    return getattr(importlib.import_module(f"llmneo.tracking.{_EXPORTS[name]}"), name)
