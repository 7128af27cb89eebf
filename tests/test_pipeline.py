"""The pipeline end to end on tiny models, the cache's reuse and resumption, and `evaluate --json`."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import write_tiny_config
from llmneo import teacher as teacher_module
from llmneo.cli import app
from llmneo.config import load_config
from llmneo.inference import Predictor
from llmneo.pipeline import run_cache_stage, run_distill_stage, run_teacher_stage, student_splits
from llmneo.teacher import cache_for, teacher_logits


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_bert_source, sst2_dir):
    """One tiny pipeline run, shared by the tests that only read its outputs."""
    folder = tmp_path_factory.mktemp("run")
    config_path = write_tiny_config(folder, tiny_bert_source, tiny_bert_source, sst2_dir)
    result = subprocess.run([sys.executable, "-m", "llmneo.cli", "run", "--config", str(config_path)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return load_config(config_path), result.stdout


@pytest.mark.slow
def test_run_writes_every_output(tiny_run):
    config, stdout = tiny_run
    run_dir = config.run_dir
    for name in ("config.yaml", "metrics.json", "teacher_metrics.json", "predictions_dev.csv", "summary.json",
                 "student/llmneo_model.json", "student/model.safetensors", "student/adapter/adapter_config.json",
                 "teacher/llmneo_model.json"):
        assert (run_dir / name).is_file(), name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert [entry["step"] for entry in metrics["history"]] == [2, 4]  # 64 examples / batch 16, eval every 2 steps
    final = metrics["final"]
    assert {"accuracy", "precision", "recall", "f1", "roc_auc", "agreement", "confusion_matrix"} <= set(final)
    assert sum(map(sum, final["confusion_matrix"])) == 32
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["student"]["parameters"] < summary["teacher"]["parameters"]
    assert "teacher vs student" in stdout and "ms / example" in stdout
    # The saved student reproduces the recorded dev predictions row for row (dev order is kept).
    table = pd.read_csv(run_dir / "predictions_dev.csv", keep_default_na=False)
    probs = Predictor.load(run_dir / "student").predict_proba(table["text"].tolist())
    np.testing.assert_allclose(probs, table[["student_prob_negative", "student_prob_positive"]].to_numpy(), atol=1e-4)
    assert final["accuracy"] == pytest.approx(float(np.mean(probs.argmax(1) == table["label"].to_numpy())))
    meta = json.loads((run_dir / "student/llmneo_model.json").read_text())
    assert meta["lora"]["r"] == 4 and meta["keep_layers"] == [0, 1] and meta["calibration"]["temperature"] > 0
    assert 0 < meta["parameters"]["trainable_share"] < 1


@pytest.mark.slow
def test_evaluate_json_and_predict_on_the_saved_student(tiny_run, sst2_dir):
    config, _ = tiny_run
    runner = CliRunner()
    result = runner.invoke(app, ["evaluate", str(config.run_dir), "--data", str(sst2_dir / "dev.tsv"), "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert set(metrics) == {"accuracy", "precision", "recall", "f1", "roc_auc", "n"} and metrics["n"] == 872
    result = runner.invoke(app, ["predict", str(config.run_dir / "student"), "a fine film", "a dull mess"])
    assert result.exit_code == 0 and len(result.stdout.strip().splitlines()) == 2
    assert all(line.split()[0] in ("negative", "positive") for line in result.stdout.strip().splitlines())


@pytest.mark.slow
def test_second_distill_reuses_the_cache_without_loading_the_teacher(tiny_run, monkeypatch):
    config, _ = tiny_run
    def refuse(*_args, **_kwargs):
        raise AssertionError("the teacher was loaded although its logits are cached")
    monkeypatch.setattr(teacher_module, "load_live_teacher", refuse)
    cached = teacher_logits(config, student_splits(config))
    assert cached.train.shape == (64, 2) and cached.dev.shape == (32, 2)
    assert cached.teacher_dev_metrics["n"] == 32


def test_cache_resumes_after_interruption_and_rebuilds_when_corrupt(tmp_path, tiny_bert_source, sst2_dir):
    config = load_config(write_tiny_config(tmp_path, tiny_bert_source, tiny_bert_source, sst2_dir,
                                           teacher={"train": {"max_steps": 1, "batch_size": 8, "eval_steps": 1}}))
    run_teacher_stage(config)
    splits = student_splits(config)
    seen = []

    def stop_after_two(split, index):
        seen.append((split, index))
        if len(seen) == 2:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        teacher_logits(config, splits, on_shard=stop_after_two)
    assert seen == [("train", 0), ("train", 1)]
    resumed = []
    cached = teacher_logits(config, splits, on_shard=lambda split, index: resumed.append((split, index)))
    assert resumed == [("train", 2), ("train", 3), ("dev", 0), ("dev", 1)]  # finished shards were kept
    cache = cache_for(config, splits)
    cache.remove()
    fresh = teacher_logits(config, splits)
    np.testing.assert_allclose(cached.train, fresh.train, atol=1e-5)
    np.testing.assert_allclose(cached.dev, fresh.dev, atol=1e-5)
    # Corrupt one byte of the merged train logits: detected, reported, rebuilt.
    path = cache.folder / "train.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    rebuilt = []
    again = teacher_logits(config, splits, on_shard=lambda split, index: rebuilt.append(split))
    assert rebuilt.count("train") == 4 and rebuilt.count("dev") == 2
    np.testing.assert_allclose(again.train, fresh.train, atol=1e-5)


@pytest.mark.slow
def test_verbalizer_llama_teacher_distils_into_a_bert_student(tmp_path, tiny_llama_source, tiny_bert_source, sst2_dir):
    """Different tokenizers and architectures: KD works over class logits, each model tokenising itself."""
    config = load_config(write_tiny_config(
        tmp_path, tiny_llama_source, tiny_bert_source, sst2_dir,
        teacher={"kind": "verbalizer", "template": "review {text} sentiment", "lora": {"enabled": True, "r": 2},
                 "train": {"max_steps": 2, "batch_size": 8, "eval_steps": 2, "logging_steps": 1}},
        loss={"kind": "js", "temperature": 2.0, "alpha": 0.7}))
    run_teacher_stage(config)
    cached = run_cache_stage(config)
    outcome = run_distill_stage(config)
    assert json.loads((config.run_dir / "teacher/llmneo_model.json").read_text())["kind"] == "verbalizer"
    assert cached.train.shape == (64, 2)
    assert 0 <= outcome.final["agreement"] <= 1 and outcome.final["n"] == 32
