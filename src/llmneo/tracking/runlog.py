"""What a run folder puts into MLflow: files, params, final metrics and plots, after each stage.

The figures come from ``llmneo.reporting``, so MLflow and the HTML report show the same pictures.
For the "student" stage the model is logged and registered as well (``llmneo.tracking.registry``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llmneo.config import flatten
from llmneo.modelfolder import META_FILE
from llmneo.reporting import plots
from llmneo.reporting.report import RunOutputs, confusion_matrices, read_run_folder, run_figures
from llmneo.tracking.tracker import MlflowTracker, Tracker

__all__ = ["log_run_folder", "log_stage_outputs"]


def log_stage_outputs(tracker: Tracker, run_dir: Path) -> None:
    """Log what the stage wrote to the run folder: files, plots, and for "student" the model.

    A no-op for the tracker of a run with tracking off.
    """
    if not isinstance(tracker, MlflowTracker):
        return
    log_run_folder(tracker, Path(run_dir))
    if tracker.stage == "student" and tracker.config.tracking.log_model:
        from llmneo.tracking.registry import log_student_model  # imported here: pyfunc is slow to import

        log_student_model(tracker, Path(run_dir))


# Run-folder files each stage logs; the pipeline parent (stage None) and "student" log them all.
_STAGE_FILES = {
    "teacher": ("config.yaml", "teacher_metrics.json", f"teacher/{META_FILE}"),
    "cache": ("config.yaml",),
    "evaluate": ("summary.json", "predictions_dev.csv"),
    "ablation": ("config.yaml", "ablation.md", "ablation.json", "ablation.png"),
    "sweep": ("config.yaml", "frontier.md", "frontier.json", "frontier.png"),
}
_ALL_FILES = (
    "config.yaml",
    "metrics.json",
    "teacher_metrics.json",
    "summary.json",
    "predictions_dev.csv",
    f"student/{META_FILE}",
    f"teacher/{META_FILE}",
)


def _model_params(role: str, meta: dict[str, Any] | None) -> dict[str, Any]:
    """Model identity and size from llmneo_model.json, as ``<role>_model.*`` params."""
    keys = ("kind", "base_model", "teacher_base_model", "keep_layers", "ffn_width", "lora", "parameters", "max_length")
    picked = {key: meta[key] for key in keys if (meta or {}).get(key) is not None}
    return flatten(picked, prefix=f"{role}_model.")


def _data_params(outputs: RunOutputs) -> dict[str, Any]:
    """Data fingerprints and sizes wherever the run folder records them (``data`` sections)."""
    params: dict[str, Any] = {}
    for source in (outputs.metrics, (outputs.student_meta or {}), outputs.teacher_metrics):
        if source and isinstance(source.get("data"), dict):
            params.update(flatten(source["data"], prefix="data."))
    return params


def _metric_names(values: dict[str, Any]) -> dict[str, Any]:
    """MLflow metric names take letters, digits and `_-. /`: a class name with other characters is spelt with `_`."""
    return {re.sub(r"[^\w\-. /]", "_", key): value for key, value in values.items()}


def _log_files(tracker: MlflowTracker, run_dir: Path, names: Sequence[str]) -> None:
    for name in names:
        path = run_dir / name
        if path.is_file():
            folder = str(Path(name).parent) if "/" in name else None
            tracker.client.log_artifact(tracker.run_id, str(path), folder)


def _log_history(tracker: MlflowTracker, history: list[dict[str, Any]]) -> None:
    """History rows as per-step metrics, unless the Trainer callback already logged them."""
    if "eval_accuracy" in tracker.client.get_run(tracker.run_id).data.metrics:
        return
    for row in history:
        tracker.log_metrics(
            {key: value for key, value in row.items() if key != "step"}, step=int(row.get("step") or 0)
        )


def _log_figures(tracker: MlflowTracker, figures: dict[str, Any]) -> None:
    for stem, figure in figures.items():
        tracker.client.log_figure(tracker.run_id, figure, f"plots/{stem}.png")


def _log_teacher_stage(tracker: MlflowTracker, outputs: RunOutputs) -> None:
    teacher = outputs.teacher_metrics or {}
    tracker.log_params(_model_params("teacher", outputs.teacher_meta))
    tracker.log_metrics({f"final_{key}": value for key, value in (teacher.get("final") or {}).items()})
    _log_history(tracker, list(teacher.get("history") or []))
    _log_figures(tracker, plots.step_figures(list(teacher.get("history") or [])))


def log_run_folder(tracker: MlflowTracker, run_dir: Path) -> None:
    """Log what a stage wrote to the run folder: files, params, final metrics, plots.

    teacher: its metrics, model identity and curves; cache: the config; evaluate: the summary and
    the plots that need it; student and the pipeline parent: everything.
    """
    outputs = read_run_folder(run_dir)
    stage = tracker.stage
    _log_files(tracker, run_dir, _STAGE_FILES.get(stage or "", _ALL_FILES))
    if stage == "teacher":
        _log_teacher_stage(tracker, outputs)
        return
    if stage in ("cache", "ablation", "sweep"):  # the config (and the ablation's or sweep's table and chart) only
        return
    if stage != "evaluate":
        params = _model_params("teacher", outputs.teacher_meta) | _model_params(
            "student", outputs.student_meta
        )
        tracker.log_params(params | _data_params(outputs))
        final = (outputs.metrics or {}).get("final") or {}
        tracker.log_metrics(_metric_names(flatten(final, prefix="final_")))  # per class too: final_per_class.<name>.f1
        teacher = (outputs.metrics or {}).get("teacher") or {}
        tracker.log_metrics({f"teacher_{key}": value for key, value in teacher.items()})
        _log_history(tracker, outputs.history)
    for model, matrix in confusion_matrices(outputs).items():
        payload = {
            "labels": outputs.labels,
            "rows": "true",
            "columns": "predicted",
            "matrix": matrix.tolist(),
        }
        tracker.client.log_dict(tracker.run_id, payload, f"plots/confusion_matrix_{model}.json")
    _log_figures(tracker, run_figures(outputs))
