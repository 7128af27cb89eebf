"""What a real `llmneo run` puts into MLflow (conftest.tracked_run): the stage runs under one parent,
their metrics as the run folder has them, the champion registered from the real outputs, the report
rebuilt from the store, and the champion served straight from the registry."""

from __future__ import annotations

import json

import httpx
import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from llmneo.inference import Predictor
from llmneo.reporting.html import write_report
from llmneo.serve.app import create_app
from llmneo.serve.launch import serve_in_thread
from llmneo.serve.settings import ServeSettings

pytestmark = pytest.mark.slow

TEXTS = ["a fine film", "a dull, lifeless script", "not bad at all"]


def _runs(tracked_run) -> dict[str, mlflow.entities.Run]:
    client = MlflowClient(tracked_run.uri)
    experiment = client.get_experiment_by_name(tracked_run.config.tracking.experiment)
    return {run.info.run_name: run for run in client.search_runs([experiment.experiment_id])}


def test_every_stage_ran_finished_under_one_parent(tracked_run):
    runs = _runs(tracked_run)
    assert set(runs) == {"tiny", "tiny-teacher", "tiny-cache", "tiny-student", "tiny-evaluate"}
    parent = runs["tiny"].info.run_id
    for name, run in runs.items():
        assert run.info.status == "FINISHED", name
        if name != "tiny":
            assert run.data.tags["mlflow.parentRunId"] == parent and run.data.tags["llmneo.stage"] == name[5:]


def test_the_student_run_holds_the_run_folders_figures(tracked_run):
    student = _runs(tracked_run)["tiny-student"]
    metrics = json.loads((tracked_run.run_dir / "metrics.json").read_text())
    history = MlflowClient(tracked_run.uri).get_metric_history(student.info.run_id, "eval_accuracy")
    assert [(m.step, m.value) for m in history] == [
        (row["step"], pytest.approx(row["eval_accuracy"])) for row in metrics["history"]]
    assert student.data.metrics["final_accuracy"] == pytest.approx(metrics["final"]["accuracy"])
    assert student.data.params["student.name_or_path"] == "run:teacher"
    assert student.data.params["student.train.mixed_precision"] == "bf16"


def test_the_champion_is_the_real_student_and_predicts_like_it(tracked_run):
    client = MlflowClient(tracked_run.uri)
    champion = client.get_model_version_by_alias(tracked_run.model_name, "champion")
    metrics = json.loads((tracked_run.run_dir / "metrics.json").read_text())
    assert champion.run_id == _runs(tracked_run)["tiny-student"].info.run_id
    assert champion.tags["dev_accuracy"] == f"{metrics['final']['accuracy']:.6f}"
    assert champion.tags["dev_fingerprint"] == metrics["data"]["dev_fingerprint"]
    expected = Predictor.load(tracked_run.run_dir / "student").predict_proba(TEXTS)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", tracked_run.uri)
        model = mlflow.pyfunc.load_model(f"models:/{tracked_run.model_name}@champion")
    got = model.predict(TEXTS)[["prob_negative", "prob_positive"]].to_numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_the_report_rebuilt_from_the_store_shows_the_run(tracked_run, tmp_path):
    parent = _runs(tracked_run)["tiny"].info.run_id
    html = write_report(parent, tmp_path / "report.html", tracking_uri=tracked_run.uri).read_text()
    for image in ("confusion_matrix_student", "teacher_vs_student", "eval_accuracy_vs_step", "roc_curve"):
        assert f'<img alt="{image}" src="data:image/png;base64,' in html
    assert "<td>student.lora.r</td><td>4</td>" in html


def test_the_champion_serves_from_the_registry(tracked_run, monkeypatch):
    monkeypatch.chdir(tracked_run.folder)  # the store's artifacts sit beside the project folder
    source = f"models:/{tracked_run.model_name}@champion"
    settings = ServeSettings(model=source, mlflow_tracking_uri=tracked_run.uri)
    expected = Predictor.load(tracked_run.run_dir / "student").predict_proba(TEXTS)
    with serve_in_thread(create_app(settings)) as url, httpx.Client(base_url=url, timeout=60) as client:
        info = client.get("/info").json()
        assert info["source"] == source and info["version"] == "1" and info["name"] == "tiny"
        answer = client.post("/predict", json={"texts": TEXTS})
    assert answer.status_code == 200
    np.testing.assert_allclose([row["probs"] for row in answer.json()["results"]], expected, atol=1e-5)
