"""A newcomer's first hour, row by row (issue 23): each mistake gets one line that names what is wrong and
where, before any work starts and with nothing left behind; `--debug` shows the traceback.

These run the real command line in a subprocess, as a user types it, with the hub offline as here.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from conftest import PROJECT_ROOT, write_tiny_config


def llmneo(*args: str, cwd: Path | None = None, env: dict | None = None, stdin: str | None = None,
           timeout: float = 300) -> subprocess.CompletedProcess:
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    environment.pop("LLMNEO_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "llmneo.cli", *args], cwd=cwd, env=environment, input=stdin,
                          capture_output=True, text=True, timeout=timeout, check=False)


def one_line(result: subprocess.CompletedProcess) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-2000:]
    return lines[0]


def test_version():
    result = llmneo("--version")
    assert result.returncode == 0 and result.stdout.startswith("llmneo ")


def test_a_mistyped_model_path_is_one_line_naming_key_path_and_folders_and_creates_nothing(tmp_path, sst2_dir):
    path = write_tiny_config(tmp_path, tmp_path / "no-such-teacher", tmp_path, sst2_dir,
                             tracking={"enabled": True, "tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"})
    started = time.monotonic()
    line = one_line(llmneo("run", "--config", str(path), cwd=tmp_path))
    assert time.monotonic() - started < 60  # no minute of hub retries
    assert f"teacher.name_or_path: '{tmp_path / 'no-such-teacher'}' does not exist" in line
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "mlflow.db").exists()


def test_the_demo_config_from_another_folder_says_where_it_looked(tmp_path):
    line = one_line(llmneo("run", "--config", str(PROJECT_ROOT / "configs" / "demo.yaml"), cwd=tmp_path))
    assert "teacher.name_or_path: 'models/all-mpnet-base-v2'" in line
    assert str(tmp_path) in line and str(PROJECT_ROOT / "configs") in line
    assert not (tmp_path / "outputs").exists()


def test_a_relative_model_path_is_found_beside_the_config_file(tmp_path, tiny_bert_source, sst2_dir):
    from llmneo.cli.preflight import preflight
    from llmneo.config import load_config

    folder = tmp_path / "project"
    (folder / "models").mkdir(parents=True)
    (folder / "models" / "teacher").symlink_to(tiny_bert_source)
    path = write_tiny_config(folder, "models/teacher", tiny_bert_source, sst2_dir)
    config = preflight(load_config(path), path)  # the working folder is not `folder`
    assert config.teacher.name_or_path == str((folder / "models" / "teacher").resolve())


def test_a_missing_data_folder_names_the_environment_variable_and_leaves_nothing(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"name": "x", "output_dir": str(tmp_path / "outputs"),
                                      "teacher": {"name_or_path": str(tmp_path)},
                                      "student": {"name_or_path": str(tmp_path)},
                                      "tracking": {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"}}))
    line = one_line(llmneo("run", "--config", str(config), env={"LLMNEO_DATA_DIR": "/nowhere"}))
    assert "data.glue_dir (from $LLMNEO_DATA_DIR): /nowhere has no train.tsv or dev.tsv" in line
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "mlflow.db").exists()
    assert "INFO" not in line


def test_a_config_that_is_not_utf8_names_its_file_and_line(tmp_path):
    config = tmp_path / "latin1.yaml"
    config.write_bytes(b"name: caf\xe9\nteacher: {name_or_path: t}\n")
    assert one_line(llmneo("run", "--config", str(config))) == (
        f"error: {config}:1: not UTF-8 (byte 0xe9); save the file as UTF-8")


def test_a_set_typo_names_the_flag_and_the_nearest_key(tmp_path, sst2_dir):
    path = write_tiny_config(tmp_path, tmp_path, tmp_path, sst2_dir)
    assert one_line(llmneo("distill", "--config", str(path), "--set", "student.trian.epochs=1")) == (
        "error: --set student.trian.epochs=1: student.trian: unknown key (did you mean student.train.epochs?)")


def test_augment_enabled_alone_says_what_to_set(tmp_path, sst2_dir):
    path = write_tiny_config(tmp_path, tmp_path, tmp_path, sst2_dir, augment={"enabled": True})
    line = one_line(llmneo("run", "--config", str(path)))
    assert "tiny.yaml: augment.enabled, but the transfer set has no source: set augment.rest_of_train" in line


def test_serving_a_registry_model_that_does_not_exist_is_one_line(tmp_path):
    line = one_line(llmneo("serve", "models:/nope@champion", cwd=tmp_path,
                           env={"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}))
    assert "nope" in line


def test_debug_shows_the_traceback(tmp_path, sst2_dir):
    path = write_tiny_config(tmp_path, tmp_path / "missing", tmp_path, sst2_dir)
    result = llmneo("--debug", "run", "--config", str(path))
    assert result.returncode != 0 and "Traceback" in result.stderr


class TestPredict:
    """`llmneo predict` on the session's tiny run folder: arguments, a file, stdin; a table or files out."""

    def test_blank_text_and_bad_bytes_are_refused_naming_them(self, tracked_run):
        model = str(tracked_run.run_dir)
        assert one_line(llmneo("predict", model, "fine", "   ")) == "error: text 2: empty or whitespace-only text"
        assert one_line(llmneo("predict", model, "x" * 2001)) == (
            "error: text 1: 2,001 characters, over the limit of 2,000")
        garbled = subprocess.run([sys.executable, "-m", "llmneo.cli", "predict", model.encode(), b"caf\xe9"],
                                 capture_output=True, text=True, check=False, env={**os.environ, "LC_ALL": "C.UTF-8"})
        assert garbled.returncode == 2 and garbled.stderr.count("\n") == 1 and "not valid UTF-8" in garbled.stderr

    def test_texts_from_a_file_and_from_stdin_to_jsonl_and_csv(self, tracked_run, tmp_path):
        model = str(tracked_run.run_dir)
        texts = tmp_path / "reviews.csv"
        texts.write_text('id,text\n1,"a fine, warm film"\n2,"dull\nand long"\n')
        out = tmp_path / "labels.jsonl"
        result = llmneo("predict", model, "--file", str(texts), "--out", str(out))
        assert result.returncode == 0, result.stderr
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        assert [row["text"] for row in rows] == ["a fine, warm film", "dull\nand long"]
        assert all(row["label"] in ("negative", "positive") and abs(sum(row["probs"]) - 1) < 1e-4 for row in rows)
        piped = llmneo("predict", model, "-", stdin="a fine film\na dull mess\n")
        assert piped.returncode == 0 and [json.loads(line)["text"] for line in piped.stdout.splitlines()] == [
            "a fine film", "a dull mess"]  # not a terminal: JSON lines
        assert [json.loads(line)["text"] for line in llmneo("predict", model, "--file", "-",
                                                             stdin="fine\n").stdout.splitlines()] == ["fine"]
        mixed = llmneo("predict", model, "fine", "-", stdin="good\n")
        assert mixed.returncode != 0 and "`-` reads stdin: give it alone" in mixed.stderr
        as_csv = tmp_path / "labels.csv"
        assert llmneo("predict", model, "-", "--out", str(as_csv), stdin="good\n").returncode == 0
        assert as_csv.read_text().splitlines()[0] == "text,label,prob_negative,prob_positive"

    def test_a_bad_backend_is_refused(self, tracked_run):
        result = llmneo("predict", str(tracked_run.run_dir), "fine", "--backend", "tpu")
        assert result.returncode == 2 and "tpu" in result.stderr

    def test_a_missing_model_folder_is_one_line(self, tmp_path):
        assert "no such folder" in one_line(llmneo("predict", str(tmp_path / "outputs" / "dmeo"), "fine"))


def test_evaluate_json_is_valid_json_on_a_one_class_file(tracked_run, tmp_path):
    data = tmp_path / "positive.tsv"
    data.write_text("sentence\tlabel\na fine film\t1\nwarm and funny\t1\n")
    result = llmneo("evaluate", str(tracked_run.run_dir), "--data", str(data), "--json")
    assert result.returncode == 0, result.stderr
    assert "NaN" not in result.stdout
    metrics = json.loads(result.stdout)
    assert metrics["roc_auc"] is None and "one class" in metrics["roc_auc_note"]
    assert metrics["per_class"]["positive"]["support"] == 2


def test_a_run_is_quiet_and_one_accuracy_is_reported_everywhere(tracked_run, sst2_dir):
    """The session's `llmneo run`: no MLflow INFO lines or load tables; the student's accuracy at the end of
    training, in its folder (what /info serves), in the summary and from `evaluate` are one figure."""
    output = tracked_run.stdout + tracked_run.stderr
    assert "INFO mlflow" not in output and "LOAD REPORT" not in output
    assert "\r" not in output  # a log gets whole lines, not redrawn progress bars
    metrics = json.loads((tracked_run.run_dir / "metrics.json").read_text())
    summary = json.loads((tracked_run.run_dir / "summary.json").read_text())
    meta = json.loads((tracked_run.run_dir / "student" / "llmneo_model.json").read_text())
    dev = tracked_run.config.data.max_eval_samples
    evaluated = llmneo("evaluate", str(tracked_run.run_dir / "student"), "--data", str(sst2_dir / "dev.tsv"), "--json")
    assert evaluated.returncode == 0
    figures = {metrics["final"]["accuracy"], summary["student"]["accuracy"], meta["metrics"]["accuracy"]}
    assert len(figures) == 1 and dev == metrics["final"]["n"]


@contextmanager
def _sigint_as_a_terminal_delivers_it() -> Iterator[None]:
    """A shell without job control starts a background job (`make test &`, CI) with SIGINT ignored, and a child
    inherits that (the run would rightly train on). A handled signal is reset to the default at exec."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.slow
def test_ctrl_c_prints_the_command_that_resumes(tmp_path, tiny_bert_source, sst2_dir):
    path = write_tiny_config(tmp_path, tiny_bert_source, tiny_bert_source, sst2_dir,
                             teacher={"train": {"epochs": 500, "eval_steps": 1000, "save_steps": 5}})
    with _sigint_as_a_terminal_delivers_it():
        process = subprocess.Popen([sys.executable, "-m", "llmneo.cli", "run", "--config", str(path)], cwd=tmp_path,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env={**os.environ, "HF_HUB_OFFLINE": "1"})
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not list((tmp_path / "outputs").rglob("checkpoint-*")):
        time.sleep(0.5)
    assert process.poll() is None, "the run ended before it could be interrupted"
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-2000:]
    assert f"llmneo run --config {path} --resume" in stderr and "Traceback" not in stderr


def test_the_model_argument_has_one_name_and_one_help_everywhere():
    import typer

    from llmneo.cli import MODEL_HELP, app

    group = typer.main.get_command(app)
    arguments = {name: param for name, command in group.commands.items() for param in command.params
                 if param.param_type_name == "argument" and param.name in ("model", "model_dir", "path", "run_dir")}
    assert {"predict", "evaluate", "export", "serve", "bench-serve", "bench"} <= set(arguments)
    for name, param in arguments.items():
        assert param.metavar in ("MODEL", "[MODEL]"), name
        assert name == "bench" or param.help.startswith(MODEL_HELP), name  # bench: a run, teacher beside student
    assert group.commands["report"].params[0].metavar == "RUN"  # a run (folder or MLflow id), not a model


@pytest.mark.slow
def test_predict_with_the_onnx_backend_reads_the_runs_checked_export(tracked_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tracked_run.run_dir / "student", run / "student")
    exported = llmneo("export", str(run), "--max-examples", "32", "--min-agreement", "0")
    assert exported.returncode == 0, exported.stderr[-2000:]
    result = llmneo("predict", str(run), "--backend", "onnx", "a fine film", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout)["label"] in ("negative", "positive")
