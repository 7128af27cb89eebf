"""One self-contained HTML report of a run: every image inlined as a base64 PNG, one file that opens anywhere.

A report is made from a run folder (``outputs/<name>/``, see docs/CONTRACTS.md) or from an MLflow run id,
whose artifacts (and those of its child runs, for a pipeline parent) are downloaded into a temporary
folder laid out like a run folder. The figures and tables are `llmneo.reporting.report`'s.
"""

from __future__ import annotations

import base64
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from jinja2 import Environment
from matplotlib.figure import Figure

from llmneo.config import flatten
from llmneo.reporting import plots
from llmneo.reporting.frontier import frontier_figure, frontier_table
from llmneo.reporting.report import (
    ReportError,
    RunOutputs,
    confident_errors,
    model_summaries,
    per_class_tables,
    read_run_folder,
    run_figures,
    side_by_side_settings,
)

__all__ = ["download_run_artifacts", "render_html", "write_report"]


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
{% if per_class %}<h2>Per class</h2>
<table id="per-class"><tr><th>class</th><th>support</th>{% for model in per_class %}<th>{{ model }} precision</th><th>{{ model }} recall</th><th>{{ model }} F1</th>{% endfor %}</tr>
{% for name in classes %}<tr><td>{{ name }}</td><td>{{ per_class[first_model][name]["support"] }}</td>{% for model in per_class %}<td>{{ fmt(per_class[model][name]["precision"]) }}</td><td>{{ fmt(per_class[model][name]["recall"]) }}</td><td>{{ fmt(per_class[model][name]["f1"]) }}</td>{% endfor %}</tr>
{% endfor %}</table>{% endif %}
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
    per_class = per_class_tables(outputs)
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
        final={key: value for key, value in ((outputs.metrics or {}).get("final") or {}).items()
               if not isinstance(value, (dict, list))},
        per_class=per_class,
        first_model=next(iter(per_class), None),
        classes=outputs.labels,
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
