"""Plots are real PNGs of sensible size; the HTML report carries its images and tables.

``write_run_folder`` (conftest) builds a run folder in the layout of docs/CONTRACTS.md with known
numbers, so the report's tables can be checked against hand-worked values.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from conftest import HISTORY, LABELS, assert_sensible_png, write_run_folder
from llmneo.cli import app
from llmneo.reporting import plots
from llmneo.reporting.html import render_html, write_report
from llmneo.reporting.report import (
    ReportError,
    confident_errors,
    confusion_matrices,
    model_summaries,
    read_run_folder,
    run_figures,
)


@pytest.fixture
def run_folder(tmp_path) -> Path:
    return write_run_folder(tmp_path / "run")


def test_every_plot_renders_a_sensible_png():
    y_true = np.array([0, 1, 0, 1, 1, 0, 1, 0])
    positive = np.array([0.1, 0.9, 0.4, 0.6, 0.8, 0.3, 0.35, 0.7])
    probs = np.stack([1 - positive, positive], axis=1)
    figures = [
        plots.confusion_matrix_figure(np.array([[3, 1], [1, 3]]), LABELS),
        plots.roc_figure(y_true, {"teacher": positive, "student": positive[::-1]}),
        plots.reliability_figure(y_true, {"student": probs}),
        plots.comparison_figure({"teacher": {"accuracy": 0.9, "parameters": 2e7, "ms_per_example": 4.0},
                                 "student": {"accuracy": 0.8, "parameters": 1e6, "ms_per_example": None}}),
        *plots.step_figures(HISTORY).values(),
    ]
    assert len(figures) == 4 + len(plots.STEP_METRICS)
    for figure in figures:
        assert isinstance(figure, Figure)
        assert_sensible_png(plots.png_bytes(figure))


def test_step_figures_only_for_metrics_the_history_has():
    history = [{"step": 5, "epoch": 0.5, "eval_accuracy": 0.7}, {"step": 10, "epoch": 1.0}]
    figures = plots.step_figures(history)
    assert set(figures) == {"epoch_vs_step", "eval_accuracy_vs_step"}
    line = figures["epoch_vs_step"].axes[0].lines[0]
    assert list(line.get_xdata()) == [5, 10] and list(line.get_ydata()) == [0.5, 1.0]


def test_reliability_bins_hand_worked():
    probs = np.array([[0.95, 0.05], [0.05, 0.95], [0.4, 0.6], [0.65, 0.35], [0.0, 1.0]])
    y_true = np.array([0, 0, 1, 1, 1])
    bins = plots.reliability_bins(probs, y_true, n_bins=5)  # edges 0, .2, .4, .6, .8, 1
    assert list(bins["count"]) == [0, 0, 1, 1, 3]
    assert bins["accuracy"][2] == 1.0 and bins["accuracy"][3] == 0.0
    assert bins["accuracy"][4] == pytest.approx(2 / 3)
    assert bins["confidence"][4] == pytest.approx((0.95 + 0.95 + 1.0) / 3)


def test_confusion_matrix_refuses_a_shape_that_does_not_match_the_labels():
    with pytest.raises(ValueError, match="does not match 3 labels"):
        plots.confusion_matrix_figure(np.eye(2), ["a", "b", "c"])


def test_run_folder_tables_match_hand_worked_values(run_folder):
    outputs = read_run_folder(run_folder)
    assert outputs.labels == LABELS and outputs.models == ["teacher", "student"]
    student = confusion_matrices(outputs)["student"]
    assert student.sum() == 40 and np.trace(student) == 30  # rows 30-39 are the only errors
    errors = confident_errors(outputs, limit=3)
    assert list(errors["confidence"]) == pytest.approx([0.96, 0.92, 0.88])
    assert errors["text"][0].startswith("<script>")  # row 39, the most confident error
    assert set(errors.columns) >= {"label", "predicted", "teacher_predicted", "teacher_confidence"}
    summaries = model_summaries(outputs)
    assert list(summaries) == ["teacher", "student"] and summaries["student"]["parameters"] == 999_138
    assert "speedup" not in summaries  # a number in summary.json, not a model


def test_labels_as_names_are_read_and_unknown_names_are_refused(run_folder):
    frame = pd.read_csv(run_folder / "predictions_dev.csv")
    frame["label"] = [LABELS[i] for i in frame["label"]]
    frame.to_csv(run_folder / "predictions_dev.csv", index=False)
    assert np.trace(confusion_matrices(read_run_folder(run_folder))["student"]) == 30
    frame.loc[3, "label"] = "neutral"
    frame.to_csv(run_folder / "predictions_dev.csv", index=False)
    with pytest.raises(ReportError, match=r"row 5: label 'neutral'"):
        confusion_matrices(read_run_folder(run_folder))


def test_malformed_json_is_named_with_its_line(run_folder):
    (run_folder / "metrics.json").write_text('{"history": [\n  oops\n]}')
    with pytest.raises(ReportError, match=r"metrics.json:2: invalid JSON"):
        read_run_folder(run_folder)


def test_report_from_run_folder_holds_images_and_tables(run_folder):
    path = write_report(str(run_folder))
    assert path == run_folder / "report.html"
    html = path.read_text()
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([^"]+)"', html)
    names = [name for name, _ in images]
    assert set(names) == set(run_figures(read_run_folder(run_folder)))
    assert {"teacher_vs_student", "confusion_matrix_teacher", "confusion_matrix_student", "roc_curve",
            "reliability_diagram", "eval_accuracy_vs_step"} <= set(names)
    for _, payload in images:
        assert_sensible_png(base64.b64decode(payload))
    for table in ("models", "errors", "final", "side-by-side", "hyperparameters"):
        assert f'<table id="{table}">' in html
    assert "<td>student.train.learning_rate</td><td>5e-05</td>" in html
    assert "<td>name_or_path</td><td>tiny-teacher</td><td>tiny-student</td>" in html  # side by side
    assert "<td>lora.enabled</td><td>False</td><td>True</td>" in html
    assert "<td>parameters</td><td>22,700,000</td><td>999,138</td>" in html
    assert "&lt;script&gt;alert(" in html and "<script>alert(" not in html  # texts are escaped
    assert "http://" not in html and "https://" not in html  # nothing to fetch: opens anywhere


def test_report_of_a_partial_folder_still_renders(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({"history": HISTORY}))
    html = render_html(read_run_folder(tmp_path), "partial")
    assert html.count("data:image/png;base64,") == len(plots.STEP_METRICS)
    assert "No student errors to show" in html


def test_report_command_writes_the_file_and_names_a_bad_source(run_folder, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    output = tmp_path / "out.html"
    result = CliRunner().invoke(app, ["report", str(run_folder), "--output", str(output)])
    assert result.exit_code == 0, result.output
    assert output.stat().st_size > 50_000 and str(output) in result.output
    missing = CliRunner().invoke(app, ["report", "no-such-run"])
    assert missing.exit_code == 2
    assert "no-such-run: no such run folder, and no MLflow store at sqlite:///" in missing.output
    assert not (tmp_path / "mlflow.db").exists()
    store = f"sqlite:///{tmp_path / 'store.db'}"
    MlflowClient(store).search_experiments()  # an existing store without that run
    unknown = CliRunner().invoke(app, ["report", "no-such-run", "--tracking-uri", store])
    assert unknown.exit_code == 2 and "no-such-run: not a run folder, and not a run in sqlite:///" in unknown.output


def test_six_named_classes_get_a_larger_readable_confusion_matrix():
    from conftest import png_size
    from llmneo.reporting.plots import confusion_matrix_figure, png_bytes

    names = ["DESC (description)", "ENTY (entity)", "ABBR (abbreviation)", "HUM (human)", "LOC (location)",
             "NUM (numeric)"]
    six = png_size(png_bytes(confusion_matrix_figure(np.diag([138, 94, 9, 65, 81, 113]), names)))
    two = png_size(png_bytes(confusion_matrix_figure(np.diag([428, 444]), ["negative", "positive"])))
    assert six[0] > two[0] and six[1] > two[1]


def test_the_report_has_a_per_class_table_for_each_model(run_folder):
    html = render_html(read_run_folder(run_folder), "test")
    table = html[html.index('<table id="per-class">'):]
    table = table[:table.index("</table>")]
    assert "<td>negative</td><td>20</td>" in table and "<td>positive</td><td>20</td>" in table
    assert "student F1" in table and "teacher F1" in table
