"""Read a run folder and turn it into figures and tables.

The same reading and the same figures feed MLflow (``tracking`` logs them as artifacts) and the HTML
report (``llmneo.reporting.html``), so what the UI shows and what the report shows never drift apart.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from matplotlib.figure import Figure
from sklearn.metrics import confusion_matrix

from llmneo.config import flatten
from llmneo.maths.metrics import per_class_metrics
from llmneo.modelfolder import META_FILE
from llmneo.reporting import plots

__all__ = [
    "ReportError",
    "RunOutputs",
    "confident_errors",
    "confusion_matrices",
    "model_probabilities",
    "model_summaries",
    "per_class_tables",
    "read_json",
    "read_run_folder",
    "run_figures",
    "side_by_side_settings",
    "true_label_ids",
    ]

_PROB_COLUMN = re.compile(r"^(?P<model>[A-Za-z0-9]+)_prob_(?P<label>.+)$")
_MODEL_ORDER = ("teacher", "student")


class ReportError(ValueError):
    """A run folder or run id that cannot be reported on, phrased to name the file at fault."""


@dataclass
class RunOutputs:
    """Everything a run folder holds that tracking and the report use; absent files are None."""

    run_dir: Path
    config: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    teacher_metrics: dict[str, Any] | None = None
    summary: dict[str, Any] | None = None
    predictions: pd.DataFrame | None = None
    student_meta: dict[str, Any] | None = None
    teacher_meta: dict[str, Any] | None = None
    frontier: dict[str, Any] | None = None  # frontier.json of `llmneo sweep`
    labels: list[str] = field(default_factory=list)

    @property
    def history(self) -> list[dict[str, Any]]:
        return list((self.metrics or {}).get("history") or [])

    @property
    def models(self) -> list[str]:
        """Models with probabilities in predictions_dev.csv, teacher first."""
        if self.predictions is None:
            return []
        found = {
            match["model"] for column in self.predictions.columns if (match := _PROB_COLUMN.match(column))
        }
        return sorted(found, key=lambda name: (_MODEL_ORDER.index(name) if name in _MODEL_ORDER else 9, name))


def read_json(path: Path) -> dict[str, Any] | None:
    """A run folder's JSON file (metrics.json, summary.json, a model's meta), or None when absent; the one
    reader of them (the report, the registry)."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ReportError(f"{path}:{error.lineno}: invalid JSON: {error.msg}") from None


def _read_yaml(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ReportError(f"{path}: invalid YAML: {error}") from None


def _labels_from(outputs: RunOutputs) -> list[str]:
    for source in (outputs.student_meta, outputs.teacher_meta):
        if source and source.get("labels"):
            return list(source["labels"])
    if outputs.config and (outputs.config.get("data") or {}).get("labels"):
        return list(outputs.config["data"]["labels"])
    if outputs.predictions is not None:
        seen = [m["label"] for c in outputs.predictions.columns if (m := _PROB_COLUMN.match(c))]
        return list(dict.fromkeys(seen))
    return []


def read_run_folder(run_dir: str | Path) -> RunOutputs:
    """Read the files of a run folder; a missing file is None, a malformed one is an error."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ReportError(f"{run_dir}: not a run folder (no such directory)")
    outputs = RunOutputs(
        run_dir=run_dir,
        config=_read_yaml(run_dir / "config.yaml"),
        metrics=read_json(run_dir / "metrics.json"),
        teacher_metrics=read_json(run_dir / "teacher_metrics.json"),
        summary=read_json(run_dir / "summary.json"),
        student_meta=read_json(run_dir / "student" / META_FILE),
        teacher_meta=read_json(run_dir / "teacher" / META_FILE),
        frontier=read_json(run_dir / "frontier.json"),
    )
    predictions_path = run_dir / "predictions_dev.csv"
    if predictions_path.is_file():
        outputs.predictions = pd.read_csv(predictions_path, keep_default_na=False)
        for column in ("text", "label"):
            if column not in outputs.predictions.columns:
                raise ReportError(f"{predictions_path}: missing column {column!r}")
    outputs.labels = _labels_from(outputs)
    return outputs


def true_label_ids(predictions: pd.DataFrame, labels: list[str]) -> np.ndarray:
    """The ``label`` column as class ids, whether it holds ids or label names."""
    column = predictions["label"]
    if pd.api.types.is_integer_dtype(column):
        ids = column.to_numpy()
    else:
        index = {name: position for position, name in enumerate(labels)}
        unknown = [(row, value) for row, value in enumerate(column) if str(value) not in index]
        if unknown:
            row, value = unknown[0]
            raise ReportError(f"predictions_dev.csv row {row + 2}: label {value!r} is not one of {labels}")
        ids = np.array([index[str(value)] for value in column])
    bad = np.flatnonzero((ids < 0) | (ids >= len(labels)))
    if bad.size:
        raise ReportError(
            f"predictions_dev.csv row {bad[0] + 2}: label id {ids[bad[0]]} outside 0..{len(labels) - 1}"
        )
    return ids


def model_probabilities(predictions: pd.DataFrame, model: str, labels: list[str]) -> np.ndarray:
    """(N, C) class probabilities of one model from its ``<model>_prob_<label>`` columns."""
    columns = [f"{model}_prob_{label}" for label in labels]
    missing = [column for column in columns if column not in predictions.columns]
    if missing:
        raise ReportError(f"predictions_dev.csv: missing column(s) {missing}")
    return predictions[columns].to_numpy(dtype=float)


def confusion_matrices(outputs: RunOutputs) -> dict[str, np.ndarray]:
    """Per model, the (C, C) confusion matrix on dev: rows true class, columns predicted class."""
    if outputs.predictions is None:
        return {}
    y_true = true_label_ids(outputs.predictions, outputs.labels)
    classes = list(range(len(outputs.labels)))
    return {
        model: confusion_matrix(
            y_true, model_probabilities(outputs.predictions, model, outputs.labels).argmax(1), labels=classes
        )
        for model in outputs.models
    }


def model_summaries(outputs: RunOutputs) -> dict[str, dict[str, Any]]:
    """Teacher and student side by side: summary.json first, filled in from model metadata and predictions."""
    summaries: dict[str, dict[str, Any]] = {}
    for name, values in (outputs.summary or {}).items():
        if isinstance(values, dict):
            summaries[name] = dict(values)
    for name, meta in (("teacher", outputs.teacher_meta), ("student", outputs.student_meta)):
        if meta:
            row = summaries.setdefault(name, {})
            row.setdefault("parameters", (meta.get("parameters") or {}).get("total"))
            row.setdefault("base_model", meta.get("base_model"))
    if outputs.predictions is not None:
        y_true = true_label_ids(outputs.predictions, outputs.labels)
        for model in outputs.models:
            predicted = model_probabilities(outputs.predictions, model, outputs.labels).argmax(1)
            summaries.setdefault(model, {}).setdefault("accuracy", float((predicted == y_true).mean()))
    ordered = sorted(
        summaries, key=lambda name: (_MODEL_ORDER.index(name) if name in _MODEL_ORDER else 9, name)
    )
    return {name: summaries[name] for name in ordered}


def per_class_tables(outputs: RunOutputs) -> dict[str, dict[str, dict[str, float]]]:
    """Per model, each class's precision, recall, F1 and support on dev, from the recorded predictions."""
    if outputs.predictions is None:
        return {}
    y_true = true_label_ids(outputs.predictions, outputs.labels)
    return {model: per_class_metrics(y_true, model_probabilities(outputs.predictions, model, outputs.labels).argmax(1),
                                     outputs.labels) for model in outputs.models}


def confident_errors(outputs: RunOutputs, model: str = "student", limit: int = 20) -> pd.DataFrame:
    """The ``limit`` dev examples the model got wrong with the highest confidence, most confident first."""
    if outputs.predictions is None or model not in outputs.models:
        return pd.DataFrame(columns=["text", "label", "predicted", "confidence"])
    frame = outputs.predictions
    labels = outputs.labels
    y_true = true_label_ids(frame, labels)
    probs = model_probabilities(frame, model, labels)  # (N, C)
    predicted = probs.argmax(1)
    table = pd.DataFrame(
        {
            "text": frame["text"].astype(str),
            "label": [labels[i] for i in y_true],
            "predicted": [labels[i] for i in predicted],
            "confidence": probs.max(1),
        }
    )
    for other in outputs.models:
        if other != model:
            other_probs = model_probabilities(frame, other, labels)
            table[f"{other}_predicted"] = [labels[i] for i in other_probs.argmax(1)]
            table[f"{other}_confidence"] = other_probs.max(1)
    wrong = table[predicted != y_true]
    return wrong.sort_values("confidence", ascending=False).head(limit).reset_index(drop=True)


def run_figures(outputs: RunOutputs) -> dict[str, Figure]:
    """Every plot of a run, keyed by file stem (``plots/<stem>.png`` in MLflow)."""
    figures = plots.step_figures(outputs.history)
    for model, matrix in confusion_matrices(outputs).items():
        figures[f"confusion_matrix_{model}"] = plots.confusion_matrix_figure(
            matrix, outputs.labels, f"{model}: confusion matrix"
        )
    if outputs.predictions is not None and outputs.models:
        y_true = true_label_ids(outputs.predictions, outputs.labels)
        probs = {
            model: model_probabilities(outputs.predictions, model, outputs.labels) for model in outputs.models
        }
        if len(outputs.labels) == 2 and len(np.unique(y_true)) == 2:
            positive = {model: values[:, 1] for model, values in probs.items()}
            figures["roc_curve"] = plots.roc_figure(y_true, positive, f"ROC curve ({outputs.labels[1]})")
        figures["reliability_diagram"] = plots.reliability_figure(y_true, probs)
    summaries = model_summaries(outputs)
    if len(summaries) >= 2:
        figures["teacher_vs_student"] = plots.comparison_figure(summaries)
    return figures


def side_by_side_settings(config: dict[str, Any] | None) -> dict[str, tuple[Any, Any]]:
    """Settings the teacher and student sections share (model, LoRA, training), as (teacher, student)."""
    teacher = flatten((config or {}).get("teacher") or {})
    student = flatten((config or {}).get("student") or {})
    return {key: (teacher[key], student[key]) for key in teacher if key in student}
