"""Scale-out and faults: a 2-process gloo run, SIGKILL then --resume, unfinished checkpoints ignored."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from conftest import write_tiny_config
from llmneo.config import load_config
from llmneo.teacher.tune import run_teacher_stage
from llmneo.training.callbacks import COMPLETE_MARKER, last_complete_checkpoint

CLI = [sys.executable, "-m", "llmneo.cli"]


def run_cli(*args, env=None, timeout=600):
    result = subprocess.run([*CLI, *args], capture_output=True, text=True, check=False, timeout=timeout, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_two_gloo_processes_build_the_same_cache_and_train_a_student(tmp_path, tiny_bert_source, sst2_dir):
    config_path = write_tiny_config(tmp_path, tiny_bert_source, tiny_bert_source, sst2_dir,
                                    teacher={"train": {"max_steps": 2, "batch_size": 8, "eval_steps": 2}})
    config = load_config(config_path)
    run_teacher_stage(config)
    run_cli("cache", "--config", str(config_path), "--set", f"cache.dir={tmp_path / 'single'}")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                str(_free_port()), "-m", "llmneo.cli"]
    for stage in ("cache", "distill"):
        result = subprocess.run([*torchrun, stage, "--config", str(config_path), "--set",
                                 f"cache.dir={tmp_path / 'pair'}"], capture_output=True, text=True, check=False, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
    for split in ("train", "dev"):
        (single,) = (tmp_path / "single").glob(f"*/{split}.safetensors")
        (pair,) = (tmp_path / "pair").glob(f"*/{split}.safetensors")
        np.testing.assert_array_equal(load_file(single)["logits"], load_file(pair)["logits"])
    metrics = json.loads((config.run_dir / "metrics.json").read_text())
    assert metrics["history"][-1]["step"] == 2  # 64 examples over 2 ranks x batch 16: the data was sharded
    assert (config.run_dir / "student" / "model.safetensors").is_file()


def _free_port():
    from llmneo.serve.launch import free_port

    return free_port()


def _distill_args(config_path, name):
    return ["distill", "--config", str(config_path), "--set", f"name={name}"]


@pytest.mark.slow
def test_sigkill_then_resume_reaches_the_uninterrupted_result(tmp_path, tiny_bert_source, sst2_dir):
    config_path = write_tiny_config(
        tmp_path, tiny_bert_source, tiny_bert_source, sst2_dir,
        data={"max_train_samples": 480},
        teacher={"train": {"max_steps": 2, "batch_size": 8, "eval_steps": 2}},
        student={"train": {"epochs": 1, "batch_size": 8, "eval_steps": 20, "save_steps": 6, "logging_steps": 5,
                           "learning_rate": 1e-3}})
    config = load_config(config_path)
    run_teacher_stage(config)
    for name in ("straight", "killed"):
        (Path(config.output_dir) / name).mkdir(parents=True, exist_ok=True)
        os.symlink(config.run_dir / "teacher", Path(config.output_dir) / name / "teacher")
    run_cli(*_distill_args(config_path, "straight"))

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracked = ["--set", "tracking.enabled=true", "--set", f"tracking.tracking_uri={store}",
               "--set", "tracking.log_model=false", "--set", "tracking.log_system_metrics=false"]
    process = subprocess.Popen([*CLI, *_distill_args(config_path, "killed"), *tracked], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, cwd=tmp_path)
    checkpoints = Path(config.output_dir) / "killed" / "checkpoints-student"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if list(checkpoints.glob(f"checkpoint-*/{COMPLETE_MARKER}")):
            break
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (Path(config.output_dir) / "killed" / "student").exists()
    interrupted_at = last_complete_checkpoint(checkpoints)
    assert interrupted_at is not None

    run_id_file = Path(config.output_dir) / "killed" / ".mlflow" / "student.run_id"
    killed_run = run_id_file.read_text()
    resumed = subprocess.run([*CLI, *_distill_args(config_path, "killed"), *tracked, "--resume"], cwd=tmp_path,
                             capture_output=True, text=True, check=False, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from {interrupted_at}" in resumed.stdout
    from mlflow.tracking import MlflowClient
    assert run_id_file.read_text() == killed_run  # the MLflow run was continued, not started again
    client = MlflowClient(store)
    assert client.get_run(killed_run).info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(killed_run, "loss")]
    assert max(steps) == 60 and min(steps) <= int(interrupted_at.rsplit("-", 1)[1])
    straight = json.loads((Path(config.output_dir) / "straight" / "metrics.json").read_text())["final"]
    again = json.loads((Path(config.output_dir) / "killed" / "metrics.json").read_text())["final"]
    for key in ("accuracy", "f1_macro", "roc_auc", "log_loss"):
        assert again[key] == pytest.approx(straight[key], abs=1e-4), key


def test_unfinished_checkpoint_is_not_trusted(tmp_path):
    for step, complete in ((2, True), (4, True), (6, False)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if complete:
            (folder / COMPLETE_MARKER).write_text(str(step))
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-4")
    assert last_complete_checkpoint(tmp_path / "missing") is None
