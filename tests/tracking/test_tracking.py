"""Tracking against a real MLflow: a SQLite store in tmp_path, and an `mlflow server` started here.

Everything is read back through ``MlflowClient``: params, metric histories with their steps,
artifacts, the registered version and its alias; the logged model is loaded with pyfunc and asked
to predict. The server is started once per session through ``llmneo ui`` (which is tested so).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import mlflow
import numpy as np
import pandas as pd
import pytest
import requests
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

import llmneo
from conftest import assert_sensible_png, tiny_bert, tiny_config, write_run_folder
from llmneo import tracking
from llmneo.cli import app
from llmneo.config import validate_config
from llmneo.reporting.html import write_report
from llmneo.serve.launch import free_port
from llmneo.tracking.registry import apply_champion_rule, predictions_frame, texts_from_input


def _clean_env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}


def _wait_healthy(url: str, process: subprocess.Popen, log: Path, timeout: float = 120.0) -> None:
    from llmneo.serve.launch import wait_healthy

    try:
        wait_healthy(url, lambda: process.poll() is None, timeout)
    except (RuntimeError, TimeoutError) as error:
        raise RuntimeError(f"mlflow server: {error}:\n{log.read_text()[-3000:]}") from None


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory) -> str:
    """`llmneo ui` on a free loopback port, in its own project folder; killed (its group) after."""
    folder = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    log = folder / "server.log"
    with open(log, "w") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "llmneo.cli", "ui", "--port", str(port), "--host", "127.0.0.1"],
            cwd=folder, env=_clean_env(), stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, process, log)
        assert (folder / "mlflow.db").is_file()  # the project's store, as `llmneo ui` promises
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def sqlite_uri(tmp_path_factory) -> str:
    """One SQLite store for the module (creating its tables takes seconds); tests use their own runs."""
    return f"sqlite:///{tmp_path_factory.mktemp('sqlite-store') / 'mlflow.db'}"


def _config(uri: str | None, **tracking):
    fields = {"tracking_uri": uri, "system_metrics_interval_s": 0.5, **tracking}
    return validate_config(tiny_config(**fields))


def _status(uri: str, run_id: str) -> str:
    return MlflowClient(uri).get_run(run_id).info.status


@pytest.fixture(scope="module")
def logged_student(mlflow_server, tiny_model_dir, tmp_path_factory):
    """A `llmneo run`-shaped parent with a student child, logged over HTTP from a run folder."""
    run_dir = write_run_folder(tmp_path_factory.mktemp("http-run") / "run", tiny_model_dir)
    config = _config(mlflow_server, experiment="http-test", registered_model_name="http-student")
    with tracking.pipeline_run(config) as parent:
        with tracking.stage_run(config, "student") as child:
            tracking.log_stage_outputs(child, run_dir)
        tracking.log_stage_outputs(parent, run_dir)
    return SimpleNamespace(uri=mlflow_server, parent=parent.run_id, child=child.run_id, config=config,
                           client=MlflowClient(mlflow_server), run_dir=run_dir, model_dir=tiny_model_dir)


@pytest.mark.slow
def test_http_runs_params_tags_and_histories(logged_student):
    client, child_id = logged_student.client, logged_student.child
    child, parent = client.get_run(child_id), client.get_run(logged_student.parent)
    assert child.info.status == parent.info.status == "FINISHED"
    assert child.data.tags["mlflow.parentRunId"] == logged_student.parent
    assert child.info.run_name == "tiny-student" and parent.info.run_name == "tiny"
    params = child.data.params
    assert params["student.train.learning_rate"] == "5e-05" and params["teacher.name_or_path"] == "tiny-teacher"
    meta = json.loads((logged_student.model_dir / "llmneo_model.json").read_text())
    assert params["student_model.parameters.total"] == str(meta["parameters"]["total"])
    assert params["student_model.parameters.trainable_share"] == str(meta["parameters"]["trainable_share"])
    assert params["data.train_fingerprint"] == "f00dfeed" and params["data.dev"] == "40"
    tags = child.data.tags
    assert tags["llmneo.stage"] == "student" and tags["llmneo.device"] == "cpu"
    assert tags["llmneo.version"] == llmneo.__version__ and len(tags["llmneo.git_commit"]) == 40
    history = client.get_metric_history(child_id, "eval_accuracy")
    assert [(m.step, m.value) for m in history] == [(10, pytest.approx(0.6)), (20, 0.7), (30, 0.8)]
    assert [m.step for m in client.get_metric_history(child_id, "eval_roc_auc")] == [10, 20, 30]
    assert child.data.metrics["final_accuracy"] == 0.75 and child.data.metrics["teacher_accuracy"] == 0.9
    assert any(key.startswith("system/") for key in child.data.metrics)  # log_system_metrics
    assert [m.step for m in client.get_metric_history(logged_student.parent, "eval_loss")] == [10, 20, 30]


@pytest.mark.slow
def test_http_artifacts_present(logged_student, tmp_path):
    client, child_id = logged_student.client, logged_student.child
    root = {item.path for item in client.list_artifacts(child_id)}
    assert {"config.yaml", "metrics.json", "predictions_dev.csv", "summary.json", "plots", "student"} <= root
    plots = {Path(item.path).name for item in client.list_artifacts(child_id, "plots")}
    expected = {"confusion_matrix_student.png", "confusion_matrix_student.json", "roc_curve.png",
                "reliability_diagram.png", "teacher_vs_student.png", "epoch_vs_step.png",
                "eval_accuracy_vs_step.png", "eval_f1_macro_vs_step.png", "eval_f1_weighted_vs_step.png",
                "eval_precision_macro_vs_step.png", "eval_recall_macro_vs_step.png", "eval_loss_vs_step.png", "eval_roc_auc_vs_step.png"}
    assert expected <= plots, expected - plots
    folder = Path(client.download_artifacts(child_id, "plots", str(tmp_path)))
    matrix = json.loads((folder / "confusion_matrix_student.json").read_text())
    assert matrix["labels"] == ["negative", "positive"] and np.trace(matrix["matrix"]) == 30
    assert_sensible_png((folder / "roc_curve.png").read_bytes())


@pytest.mark.slow
def test_http_model_registered_as_champion_and_predicts(logged_student, monkeypatch):
    from llmneo.inference import Predictor

    client, name = logged_student.client, logged_student.config.tracking.registered_model_name
    champion = client.get_model_version_by_alias(name, "champion")
    assert champion.run_id == logged_student.child and champion.tags["dev_accuracy"] == "0.750000"
    assert champion.tags["dev_fingerprint"] == "deadbeef"
    assert client.get_run(logged_student.child).data.tags["llmneo.registered_model"] == f"{name}/{champion.version}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", logged_student.uri)
    model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    assert [spec.type.name for spec in model.metadata.get_input_schema().inputs] == ["string"]
    result = model.predict(["a fine film"])
    assert list(result.columns) == ["label", "pred", "prob_negative", "prob_positive"]
    expected = Predictor.load(logged_student.model_dir).predict_proba(["a fine film"])[0]
    assert result.loc[0, ["prob_negative", "prob_positive"]].to_numpy() == pytest.approx(expected, abs=1e-6)
    assert result.loc[0, "label"] == ["negative", "positive"][int(np.argmax(expected))]
    framed = model.predict(pd.DataFrame({"text": ["a fine film", "dull"]}))
    assert len(framed) == 2 and framed.loc[0, "prob_positive"] == pytest.approx(expected[1], abs=1e-6)


@pytest.mark.slow
def test_report_from_a_pipeline_run_id_downloads_its_children(logged_student, tmp_path):
    path = write_report(logged_student.parent, tmp_path / "report.html", tracking_uri=logged_student.uri)
    html = path.read_text()
    for image in ("confusion_matrix_student", "teacher_vs_student", "eval_accuracy_vs_step", "roc_curve"):
        assert f'<img alt="{image}" src="data:image/png;base64,' in html
    assert '<table id="errors">' in html and "<td>student.lora.r</td><td>8</td>" in html


def test_trainer_callback_logs_every_eval_and_log_step(sqlite_uri, tmp_path):
    from transformers import Trainer, TrainingArguments

    rng = np.random.default_rng(0)
    rows = [{"input_ids": rng.integers(1000, 2000, 8).tolist(), "attention_mask": [1] * 8, "labels": int(i % 2)}
            for i in range(16)]

    def compute_metrics(prediction):
        predicted = prediction.predictions.argmax(-1)
        return {"accuracy": float((predicted == prediction.label_ids).mean()), "agreement": 1.0}

    args = TrainingArguments(output_dir=str(tmp_path / "trainer"), max_steps=4, per_device_train_batch_size=4,
                             per_device_eval_batch_size=8, eval_strategy="steps", eval_steps=2, logging_steps=1,
                             save_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True)
    config = _config(sqlite_uri)
    with tracking.stage_run(config, "student") as tracker:
        callbacks = tracker.trainer_callbacks()
        Trainer(model=tiny_bert(), args=args, train_dataset=rows, eval_dataset=rows[:8],
                compute_metrics=compute_metrics, callbacks=callbacks).train()
    client = MlflowClient(sqlite_uri)
    steps = {key: [m.step for m in client.get_metric_history(tracker.run_id, key)]
             for key in ("eval_accuracy", "eval_loss", "eval_agreement", "loss", "learning_rate",
                         "epoch", "train_examples_per_second")}
    assert steps["eval_accuracy"] == steps["eval_loss"] == steps["eval_agreement"] == [2, 4]
    assert steps["loss"] == steps["learning_rate"] == [1, 2, 3, 4]
    assert steps["train_examples_per_second"] == [1, 2, 3, 4]  # one rate per logging event
    rates = client.get_metric_history(tracker.run_id, "train_examples_per_second")
    assert all(m.value > 0 for m in rates)
    assert _status(sqlite_uri, tracker.run_id) == "FINISHED"


def test_failing_stage_ends_failed_and_parent_too(sqlite_uri):
    config = _config(sqlite_uri, log_system_metrics=False)
    with (
        pytest.raises(RuntimeError, match="boom"),
        tracking.pipeline_run(config) as parent,
        tracking.stage_run(config, "teacher") as child,
    ):
        raise RuntimeError("boom")
    assert _status(sqlite_uri, child.run_id) == _status(sqlite_uri, parent.run_id) == "FAILED"
    assert mlflow.active_run() is None


def test_ctrl_c_ends_killed_and_sigterm_handler_is_restored(sqlite_uri):
    config = _config(sqlite_uri, log_system_metrics=False)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt), tracking.stage_run(config, "cache") as tracker:
        assert signal.getsignal(signal.SIGTERM) is not before
        raise KeyboardInterrupt
    assert _status(sqlite_uri, tracker.run_id) == "KILLED"
    assert signal.getsignal(signal.SIGTERM) is before


_SIGTERM_SCRIPT = """
import json, sys, time
import llmneo
from llmneo import tracking
from llmneo.config import validate_config
config = validate_config(json.loads(sys.argv[1]))
with tracking.pipeline_run(config) as parent:
    with tracking.stage_run(config, "student") as child:
        print(parent.run_id, child.run_id, flush=True)
        time.sleep(120)
"""


@pytest.mark.slow
def test_sigterm_marks_the_runs_killed(sqlite_uri):
    raw = tiny_config(tracking_uri=sqlite_uri, system_metrics_interval_s=0.5)
    process = subprocess.Popen([sys.executable, "-c", _SIGTERM_SCRIPT, json.dumps(raw)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=_clean_env())
    try:
        line = process.stdout.readline().split()
        assert len(line) == 2, process.stderr.read()
        assert _status(sqlite_uri, line[1]) == "RUNNING"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 143
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    parent_id, child_id = line
    assert _status(sqlite_uri, child_id) == _status(sqlite_uri, parent_id) == "KILLED"
    assert MlflowClient(sqlite_uri).get_run(child_id).info.end_time is not None


def test_stage_nests_under_a_run_the_caller_already_started(sqlite_uri, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", sqlite_uri)
    config = _config(None, log_system_metrics=False)
    outer = mlflow.start_run(run_name="caller-owned")
    try:
        with tracking.pipeline_run(config) as parent, tracking.stage_run(config, "evaluate") as child:
            tracker_child = child
        assert mlflow.active_run().info.run_id == outer.info.run_id  # the caller's run is still theirs
        assert os.environ["MLFLOW_TRACKING_URI"] == sqlite_uri
    finally:
        mlflow.end_run()
    client = MlflowClient(sqlite_uri)
    assert client.get_run(parent.run_id).data.tags["mlflow.parentRunId"] == outer.info.run_id
    assert client.get_run(tracker_child.run_id).data.tags["mlflow.parentRunId"] == parent.run_id
    assert _status(sqlite_uri, outer.info.run_id) == "FINISHED"
    assert _status(sqlite_uri, tracker_child.run_id) == "FINISHED"


def test_runs_left_open_or_ended_inside_a_stage_leave_the_parent_alone(sqlite_uri):
    config = _config(sqlite_uri, log_system_metrics=False)
    with tracking.pipeline_run(config) as parent:
        with tracking.stage_run(config, "cache") as ended_early:
            mlflow.end_run()  # code inside ended our run itself
        assert mlflow.active_run().info.run_id == parent.run_id
        with tracking.stage_run(config, "student") as child:
            left_open = mlflow.start_run(nested=True)  # and code inside forgot to end its own
        assert mlflow.active_run().info.run_id == parent.run_id
    assert mlflow.active_run() is None
    assert _status(sqlite_uri, ended_early.run_id) == _status(sqlite_uri, child.run_id) == "FINISHED"
    assert _status(sqlite_uri, left_open.info.run_id) == _status(sqlite_uri, parent.run_id) == "FINISHED"


def test_disabled_tracking_is_a_no_op(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    config = validate_config(tiny_config(enabled=False))
    run_dir = write_run_folder(tmp_path / "run")
    with tracking.pipeline_run(config) as parent, tracking.stage_run(config, "student") as child:
        assert parent.trainer_callbacks() == [] and child.trainer_callbacks() == []
        child.log_params({"a": 1})
        child.log_metrics({"b": 2.0}, step=3)
        tracking.log_stage_outputs(child, run_dir)
        assert mlflow.active_run() is None
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlartifacts").exists()


def test_only_rank_zero_opens_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RANK", "1")
    with tracking.stage_run(_config(f"sqlite:///{tmp_path / 'rank.db'}"), "student") as tracker:
        assert isinstance(tracker, tracking.NullTracker) and tracker.trainer_callbacks() == []
    assert not (tmp_path / "rank.db").exists()


def test_default_store_is_sqlite_in_the_project_with_artifacts_beside(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    config = _config(None, log_system_metrics=False)
    assert tracking.resolve_tracking_uri(config.tracking.tracking_uri) == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    with tracking.stage_run(config, "cache") as tracker:
        tracker.log_metrics({"cache_seconds": 1.5})
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("llmneo")
    assert experiment.artifact_location == (tmp_path.resolve() / "mlartifacts").as_uri()
    assert client.get_run(tracker.run_id).data.metrics["cache_seconds"] == 1.5
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    assert tracking.resolve_tracking_uri(config.tracking.tracking_uri) == "http://127.0.0.1:1"
    assert tracking.resolve_tracking_uri(_config("sqlite:///x.db").tracking.tracking_uri) == "sqlite:///x.db"  # config wins


def test_unknown_stage_is_refused():
    with pytest.raises(ValueError, match="unknown stage 'train'"), tracking.stage_run(_config(None), "train"):
        pass


def test_champion_rule_and_promote_command(sqlite_uri, tmp_path):
    client = MlflowClient(sqlite_uri)
    name = "rule-test"
    client.create_registered_model(name)
    experiment = client.create_experiment("promote", artifact_location=(tmp_path / "art").as_uri())
    parent = client.create_run(experiment)
    child = client.create_run(experiment, tags={"mlflow.parentRunId": parent.info.run_id})
    moved = []
    for accuracy in (0.80, 0.70, 0.80, 0.85):
        version = client.create_model_version(name, str(tmp_path), run_id=child.info.run_id).version
        client.set_model_version_tag(name, version, "dev_accuracy", str(accuracy))
        moved.append(apply_champion_rule(client, name, version))
    assert moved == [True, False, False, True]  # a tie keeps the older champion
    assert str(client.get_model_version_by_alias(name, "champion").version) == "4"

    runner = CliRunner()
    result = runner.invoke(app, ["promote", "2", "--name", name, "--tracking-uri", sqlite_uri])
    assert result.exit_code == 0, result.output
    assert str(client.get_model_version_by_alias(name, "champion").version) == "2"
    result = runner.invoke(app, ["promote", parent.info.run_id, "--name", name, "--tracking-uri", sqlite_uri])
    assert result.exit_code == 0 and "version 4 is now @champion" in result.output
    result = runner.invoke(app, ["promote", "nope", "--name", name, "--tracking-uri", sqlite_uri])
    assert result.exit_code == 2 and "nope: not a run in this tracking store" in result.output


def test_pyfunc_input_and_output_shapes():
    assert texts_from_input(pd.DataFrame({"text": ["a", "b"]})) == ["a", "b"]
    assert texts_from_input(pd.DataFrame({0: ["a"]})) == ["a"]
    assert texts_from_input("solo") == ["solo"]
    with pytest.raises(ValueError, match="needs a 'text' column"):
        texts_from_input(pd.DataFrame({"a": ["x"], "b": ["y"]}))
    with pytest.raises(TypeError, match="input item 1 is int"):
        texts_from_input(["ok", 3])
    frame = predictions_frame(np.array([[0.2, 0.8], [0.9, 0.1]]), ["negative", "positive"])
    assert frame["label"].tolist() == ["positive", "negative"] and frame["pred"].tolist() == [1, 0]
    assert frame["prob_positive"].tolist() == [0.8, 0.1]


@pytest.mark.slow
def test_mlflow_models_serve_answers_with_the_champion(logged_student, tmp_path):
    port = free_port()
    name = logged_student.config.tracking.registered_model_name
    # `mlflow models serve` execs `uvicorn` from PATH: the venv's bin, as in an activated venv
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**_clean_env(), "MLFLOW_TRACKING_URI": logged_student.uri, "PATH": path}
    log = tmp_path / "serve.log"
    with open(log, "w") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{name}@champion",
             "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)],
            cwd=tmp_path, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        _wait_at_ping(f"http://127.0.0.1:{port}", process, log)
        answer = requests.post(f"http://127.0.0.1:{port}/invocations", json={"inputs": ["a fine film"]}, timeout=30)
        assert answer.status_code == 200, answer.text
        row = answer.json()["predictions"][0]
        assert set(row) == {"label", "pred", "prob_negative", "prob_positive"}
        assert row["prob_negative"] + row["prob_positive"] == pytest.approx(1.0)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=20)


def _wait_at_ping(url: str, process: subprocess.Popen, log: Path, timeout: float = 120.0) -> None:
    from llmneo.serve.launch import wait_healthy

    try:
        wait_healthy(url, lambda: process.poll() is None, timeout, path="/ping")
    except (RuntimeError, TimeoutError) as error:
        raise RuntimeError(f"mlflow models serve: {error}:\n{log.read_text()[-3000:]}") from None


@pytest.mark.slow
def test_the_same_weights_logged_again_get_no_new_version(logged_student):
    """A student logged again unchanged (distilled once more with the same recipe, or a stage re-run) points
    at the version that holds its weights; a changed model gets a version of its own."""
    config, client = logged_student.config, logged_student.client
    name = config.tracking.registered_model_name
    before = {v.version for v in client.search_model_versions(f"name = '{name}'")}
    with tracking.stage_run(config, "student") as again:
        tracking.log_stage_outputs(again, logged_student.run_dir)
    assert {v.version for v in client.search_model_versions(f"name = '{name}'")} == before
    assert client.get_run(again.run_id).data.tags["llmneo.registered_model"] == f"{name}/{max(before, key=int)}"
