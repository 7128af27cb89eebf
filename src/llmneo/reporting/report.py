"""Read a run folder, turn it into figures and tables, and write one self-contained HTML report.

The same reading and the same figures feed MLflow (``tracking`` logs them as artifacts) and the HTML
report, so what the UI shows and what the report shows never drift apart. The report embeds every
image as a base64 PNG data URI: one file that opens anywhere without a server.

A report is made from a run folder (``outputs/<name>/``, see docs/CONTRACTS.md) or from an MLflow
run id, whose artifacts (and those of its child runs, for a pipeline parent) are downloaded into a
temporary folder laid out like a run folder.
"""

from __future__ import annotations

import base64
import json
import re
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from jinja2 import Environment
from matplotlib.figure import Figure
from sklearn.metrics import confusion_matrix

from llmneo.config import flatten
from llmneo.modelfolder import META_FILE
from llmneo.reporting import plots
from llmneo.reporting.frontier import frontier_figure, frontier_table

__all__ = [
    "read_json",
    "ReportError",
    "RunOutputs",
    "confident_errors",
    "confusion_matrices",
    "download_run_artifacts",
    "model_probabilities",
    "model_summaries",
    "read_run_folder",
    "render_html",
    "run_figures",
    "side_by_side_settings",
    "true_label_ids",
    "write_report",
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


def _data_uri(figure: Figure) -> str:
    return "data:image/png;base64," + base64.b64encode(plots.png_bytes(figure)).decode("ascii")


def _format(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10_000:
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>llmneo report: {{ title }}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}td,th{border:1px solid #ccc;padding:.25rem .6rem;text-align:left;vertical-align:top}
th{background:#f3f3f3}.grid{display:flex;flex-wrap:wrap;gap:1rem}.grid figure{margin:0}img{max-width:100%}
.side{display:grid;grid-template-columns:1fr 1fr;gap:1rem}code{font-size:.9em}
</style></head><body>
<h1>llmneo report: {{ title }}</h1>
<p>Source: <code>{{ source }}</code> &middot; written {{ written }}</p>
<h2>Teacher and student</h2>
<table id="models"><tr><th>metric</th>{% for name in summaries %}<th>{{ name }}</th>{% endfor %}</tr>
{% for key in summary_keys %}<tr><td>{{ key }}</td>{% for name in summaries %}<td>{{ fmt(summaries[name].get(key)) }}</td>{% endfor %}</tr>
{% endfor %}</table>
{% if "teacher_vs_student" in images %}<figure><img alt="teacher_vs_student" src="{{ images["teacher_vs_student"] }}"></figure>{% endif %}
{% if frontier %}<h2>Students: accuracy against speed (llmneo sweep)</h2>
<figure><img alt="frontier" src="{{ frontier.image }}"></figure>
<table id="frontier"><tr>{% for name in frontier.headers %}<th>{{ name }}</th>{% endfor %}</tr>
{% for row in frontier.cells %}<tr>{% for cell in row %}<td>{{ cell }}</td>{% endfor %}</tr>{% endfor %}</table>
{% for note in frontier.notes %}<p>{{ note }}</p>{% endfor %}{% endif %}
<h2>Confusion matrices</h2>
<div class="side">{% for name, uri in images.items() if name.startswith("confusion_matrix_") %}
<figure><img alt="{{ name }}" src="{{ uri }}"></figure>{% endfor %}</div>
<h2>Curves</h2>
<div class="grid">{% for name, uri in images.items() if not name.startswith("confusion_matrix_") and name != "teacher_vs_student" %}
<figure><img alt="{{ name }}" src="{{ uri }}" width="480"><figcaption>{{ name }}</figcaption></figure>{% endfor %}</div>
<h2>Most confident errors (student)</h2>
{% if errors %}<table id="errors"><tr>{% for column in error_columns %}<th>{{ column }}</th>{% endfor %}</tr>
{% for row in errors %}<tr>{% for column in error_columns %}<td>{{ fmt(row[column]) }}</td>{% endfor %}</tr>{% endfor %}</table>
{% else %}<p>No student errors to show (no predictions_dev.csv, or no errors).</p>{% endif %}
<h2>Final metrics</h2>
<table id="final"><tr><th>metric</th><th>value</th></tr>{% for key, value in final.items() %}<tr><td>{{ key }}</td><td>{{ fmt(value) }}</td></tr>{% endfor %}</table>
<h2>Hyperparameters</h2>
<table id="side-by-side"><tr><th>setting</th><th>teacher</th><th>student</th></tr>{% for key, pair in side_by_side.items() %}<tr><td>{{ key }}</td><td>{{ fmt(pair[0]) }}</td><td>{{ fmt(pair[1]) }}</td></tr>{% endfor %}</table>
<h3>Every resolved setting</h3>
<table id="hyperparameters"><tr><th>key</th><th>value</th></tr>{% for key, value in params.items() %}<tr><td>{{ key }}</td><td>{{ fmt(value) }}</td></tr>{% endfor %}</table>
</body></html>
"""


def render_html(outputs: RunOutputs, source: str, error_limit: int = 20) -> str:
    """The report as one HTML string, every image inlined (pure: the caller writes it)."""
    summaries = model_summaries(outputs)
    summary_keys = list(dict.fromkeys(key for row in summaries.values() for key in row))
    errors = confident_errors(outputs, limit=error_limit)
    template = Environment(autoescape=True).from_string(_TEMPLATE)
    frontier = None
    if outputs.frontier and outputs.frontier.get("rows"):
        headers, cells = frontier_table(outputs.frontier["rows"])
        frontier = {"headers": headers, "cells": cells, "notes": outputs.frontier.get("notes") or [],
                    "image": _data_uri(frontier_figure(outputs.frontier["rows"]))}
    return template.render(
        frontier=frontier,
        title=(outputs.config or {}).get("name") or outputs.run_dir.name,
        source=source,
        written=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        summaries=summaries,
        summary_keys=summary_keys,
        images={name: _data_uri(figure) for name, figure in run_figures(outputs).items()},
        errors=errors.to_dict("records"),
        error_columns=list(errors.columns),
        final=(outputs.metrics or {}).get("final") or {},
        params=flatten(outputs.config or {}),
        side_by_side=side_by_side_settings(outputs.config),
        fmt=_format,
    )


def download_run_artifacts(run_id: str, destination: Path, tracking_uri: str) -> Path:
    """Download a run's artifacts (and its child runs', for a pipeline parent) into one folder."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    try:
        run = client.get_run(run_id)
    except MlflowException as error:
        raise ReportError(
            f"{run_id}: not a run folder, and not a run in {tracking_uri} ({error.message})"
        ) from None
    children = client.search_runs(
        [run.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run_id}'"
    )
    # children first and the run itself last, so the run's own files win where names clash
    for source in [*sorted(children, key=lambda child: child.info.start_time), run]:
        if client.list_artifacts(source.info.run_id):
            client.download_artifacts(source.info.run_id, "", str(destination))
    return destination


def write_report(source: str, output: str | Path | None = None, tracking_uri: str | None = None) -> Path:
    """Write the HTML report of a run folder or an MLflow run id; returns the file written.

    Default output: ``<run folder>/report.html``, or ``report-<run id>.html`` in the working
    directory for a run id.
    """
    if Path(source).is_dir():
        outputs = read_run_folder(source)
        path = Path(output) if output else Path(source) / "report.html"
        path.write_text(render_html(outputs, str(source)))
        return path
    if tracking_uri is None:
        raise ReportError(f"{source}: no such run folder (and no tracking URI to look it up as a run id)")
    if tracking_uri.startswith("sqlite:///") and not Path(tracking_uri.removeprefix("sqlite:///")).is_file():
        # asking a SQLite store that is not there would create an empty one as a side effect
        raise ReportError(f"{source}: no such run folder, and no MLflow store at {tracking_uri}")
    with tempfile.TemporaryDirectory(prefix="llmneo-report-") as folder:
        outputs = read_run_folder(download_run_artifacts(source, Path(folder), tracking_uri))
        path = Path(output) if output else Path(f"report-{source}.html")
        path.write_text(render_html(outputs, f"MLflow run {source} ({tracking_uri})"))
    return path
