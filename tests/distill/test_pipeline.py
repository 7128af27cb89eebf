"""The pipeline end to end on tiny models, the cache's reuse and resumption, and `evaluate --json`."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from conftest import write_tiny_config
from llmneo.cache import stage as cache_stage
from llmneo.cache.stage import cache_for, run_cache_stage, teacher_logits
from llmneo.cli import app
from llmneo.config import load_config
from llmneo.distill.stage import run_distill_stage
from llmneo.inference import Predictor
from llmneo.teacher.tune import run_teacher_stage
from llmneo.training.stage import run_splits as student_splits


@pytest.fixture(scope="module")
def tiny_run(tracked_run):
    """The session's tiny pipeline run (conftest.tracked_run), read by the tests here."""
    return tracked_run.config, tracked_run.stdout


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
    assert {"accuracy", "precision_macro", "recall_macro", "f1_macro", "f1_weighted", "roc_auc", "agreement",
            "confusion_matrix"} <= set(final)
    assert sum(map(sum, final["confusion_matrix"])) == 32
    # Dev is evaluated length-sorted: the last evaluation (of the final weights) agrees with the final
    # report, which is computed in dev order, so predictions and teacher logits were sorted alike.
    last = metrics["history"][-1]
    assert (last["eval_accuracy"], last["eval_agreement"]) == pytest.approx((final["accuracy"], final["agreement"]))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["student"]["parameters"] < summary["teacher"]["parameters"]
    assert "teacher vs student" in stdout and "ms / example" in stdout
    # The saved student reproduces the recorded dev predictions row for row (dev order is kept).
    table = pd.read_csv(run_dir / "predictions_dev.csv", keep_default_na=False)
    probs = Predictor.load(run_dir / "student").predict_proba(table["text"].tolist())
    np.testing.assert_allclose(probs, table[["student_prob_negative", "student_prob_positive"]].to_numpy(), atol=1e-4)
    assert final["accuracy"] == pytest.approx(float(np.mean(probs.argmax(1) == table["label"].to_numpy())))
    # The evaluate stage times teacher and student a slice at a time, in turn, and keeps dev's order.
    assert summary["student"]["accuracy"] == pytest.approx(float(np.mean(probs.argmax(1) == table["label"].to_numpy())))
    assert summary["student"]["n"] == summary["teacher"]["n"] == 32
    assert summary["speedup"] == pytest.approx(summary["teacher"]["ms_per_example"] / summary["student"]["ms_per_example"])
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
    assert set(metrics) == {"accuracy", "precision_macro", "recall_macro", "f1_macro", "f1_weighted", "roc_auc", "n",
                            "per_class"} and metrics["n"] == 872
    assert set(metrics["per_class"]) == {"negative", "positive"}
    assert sum(c["support"] for c in metrics["per_class"].values()) == 872
    result = runner.invoke(app, ["predict", str(config.run_dir / "student"), "a fine film", "a dull mess"])
    assert result.exit_code == 0 and len(result.stdout.strip().splitlines()) == 2
    rows = [json.loads(line) for line in result.stdout.strip().splitlines()]  # not a terminal: JSON lines
    assert [row["text"] for row in rows] == ["a fine film", "a dull mess"]
    assert all(row["label"] in ("negative", "positive") for row in rows)


@pytest.mark.slow
def test_second_distill_reuses_the_cache_without_loading_the_teacher(tracked_run, tiny_bert_source, tmp_path,
                                                                    monkeypatch):
    """`distill` again after the pipeline's own: with the teacher made unloadable, it still trains the
    student, from the logits the pipeline cached."""
    copy = tmp_path / "outputs" / tracked_run.config.name
    shutil.copytree(tracked_run.run_dir, copy)  # same teacher weights, so the same cache key
    config = load_config(tracked_run.config_path, [f"output_dir={tmp_path / 'outputs'}", "tracking.enabled=false",
                                                   f"student.name_or_path={tiny_bert_source}"])

    def unloadable(*_args, **_kwargs):
        raise AssertionError("the teacher was loaded although its logits are cached")
    monkeypatch.setattr(cache_stage, "load_live_teacher", unloadable)
    outcome = run_distill_stage(config)
    assert outcome.final["n"] == 32 and (copy / "student" / "llmneo_model.json").is_file()
    first = json.loads((tracked_run.run_dir / "metrics.json").read_text())
    assert json.loads((copy / "metrics.json").read_text())["teacher"] == first["teacher"]  # the cached figures


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


@pytest.mark.slow
def test_the_run_used_bf16_run_teacher_and_modules_to_save(tracked_run):
    """The shipped configs' features, as the tracked run used them on tiny models."""
    from transformers import AutoConfig

    run_dir = tracked_run.run_dir
    adapter = json.loads((run_dir / "student/adapter/adapter_config.json").read_text())
    assert {"pooler", "LayerNorm"} <= set(adapter["modules_to_save"] or [])
    teacher_shape, student_shape = (AutoConfig.from_pretrained(run_dir / role) for role in ("teacher", "student"))
    assert student_shape.num_hidden_layers == 2 and teacher_shape.num_hidden_layers == 4  # cut from the teacher
    assert student_shape.hidden_size == teacher_shape.hidden_size
    assert json.loads((run_dir / "student/llmneo_model.json").read_text())["base_model"] == "run:teacher"
    for role in ("teacher", "student"):  # the Trainer ran with bf16 autocast, as configured
        args_files = sorted((run_dir / f"checkpoints-{role}").glob("checkpoint-*/training_args.bin"))
        assert args_files, f"no checkpoint of the {role}"
        import torch

        assert torch.load(args_files[-1], weights_only=False).bf16 is True


@pytest.mark.slow
def test_a_teacher_that_is_already_a_task_classifier_is_used_as_is(tmp_path, tiny_model_dir, tiny_bert_source,
                                                                   sst2_dir):
    """`teacher.finetune: false`: no teacher stage; the cache and evaluation run the configured model."""
    from llmneo.evaluate.stage import run_evaluate_stage

    config = load_config(write_tiny_config(
        tmp_path, tiny_model_dir, tiny_bert_source, sst2_dir, teacher={"finetune": False},
        student={"train": {"max_steps": 2, "batch_size": 8, "eval_steps": 2, "logging_steps": 1}}))
    assert run_teacher_stage(config) is None and not (config.run_dir / "teacher").exists()
    cached = run_cache_stage(config)
    reference = Predictor.load(tiny_model_dir).predict_logits(student_splits(config).dev.texts)
    np.testing.assert_allclose(cached.dev, reference, atol=1e-4)  # the configured model's own logits
    run_distill_stage(config)
    summary = run_evaluate_stage(config)
    assert summary["teacher"]["n"] == summary["student"]["n"] == 32


def test_a_frozen_bottom_and_a_narrowed_student_through_the_pipeline(tmp_path, tiny_bert_source, sst2_dir):
    """`train.freeze_embeddings` and `freeze_layers: 1` leave the token table and layer 0 as loaded and train
    the rest; a student cut to 2 layers and 16 feed-forward units (`ffn_width`) is saved, reloaded and served
    as a plain model."""
    from safetensors.torch import load_file
    from transformers import AutoConfig

    steps = {"max_steps": 3, "batch_size": 8, "eval_steps": 3, "logging_steps": 1, "save_steps": 3,
             "learning_rate": 1e-2, "freeze_embeddings": True, "freeze_layers": 1}
    config = load_config(write_tiny_config(
        tmp_path, tiny_bert_source, tiny_bert_source, sst2_dir, teacher={"train": steps},
        student={"name_or_path": "run:teacher", "keep_layers": [0, 3], "ffn_width": 16, "lora": {"enabled": False},
                 "train": {**steps, "freeze_embeddings": False, "freeze_layers": 0}}))
    run_teacher_stage(config)
    source = {k.removeprefix("bert."): v for k, v in load_file(tiny_bert_source / "model.safetensors").items()}
    tuned = {k.removeprefix("bert."): v for k, v in load_file(config.run_dir / "teacher/model.safetensors").items()}
    frozen = ["embeddings.word_embeddings.weight", "encoder.layer.0.attention.self.query.weight"]
    trained = ["encoder.layer.1.attention.self.query.weight", "encoder.layer.3.output.dense.weight"]
    assert all(torch.equal(tuned[key], source[key]) for key in frozen)
    assert not any(torch.equal(tuned[key], source[key]) for key in trained)
    run_cache_stage(config)
    outcome = run_distill_stage(config)
    student = config.run_dir / "student"
    shape = AutoConfig.from_pretrained(student)
    assert (shape.num_hidden_layers, shape.intermediate_size) == (2, 16)
    assert json.loads((student / "llmneo_model.json").read_text())["ffn_width"] == 16
    reloaded = Predictor.load(student).predict_logits(student_splits(config).dev.texts)
    assert reloaded.shape == (outcome.final["n"], 2)


@pytest.mark.slow
def test_a_validation_split_chooses_checkpoints_and_dev_is_read_once(tmp_path, tiny_bert_source, sst2_dir):
    """`data.validation_size`: teacher and student evaluate on validation during training (keep_best
    picks there), dev is scored once at the end; metrics.json keeps both, beside the teacher's."""
    path = write_tiny_config(tmp_path, tiny_bert_source, tiny_bert_source, sst2_dir,
                             data={"source": "glue_dir", "glue_dir": str(sst2_dir), "max_train_samples": 64,
                                   "max_eval_samples": 32, "validation_size": 24},
                             student={"name_or_path": str(tiny_bert_source), "max_length": 32, "keep_layers": [0, 1],
                                      "lora": {"enabled": False},
                                      "train": {"epochs": 1, "batch_size": 16, "eval_batch_size": 32,
                                                "learning_rate": 1e-3, "eval_steps": 2, "logging_steps": 1,
                                                "save_steps": 2, "keep_best": True}})
    config = load_config(path)
    splits = student_splits(config)
    assert len(splits.validation) == 24 and len(splits.train) == 64 and len(splits.dev) == 32
    assert not set(splits.validation.texts) & set(splits.train.texts)
    run_teacher_stage(config)
    run_cache_stage(config)
    outcome = run_distill_stage(config)
    metrics = json.loads((config.run_dir / "metrics.json").read_text())
    assert metrics["final"]["validation"]["n"] == 24 and metrics["final"]["n"] == 32
    best = max(metrics["history"], key=lambda entry: entry["eval_accuracy"])
    assert metrics["final"]["validation"]["accuracy"] == pytest.approx(best["eval_accuracy"])
    assert metrics["teacher_validation"]["n"] == 24 and metrics["teacher"]["n"] == 32
    probs = Predictor.load(config.run_dir / "student").predict_proba(splits.dev.texts)
    assert outcome.final["accuracy"] == pytest.approx(float(np.mean(probs.argmax(1) == np.array(splits.dev.labels))))
    teacher_meta = json.loads((config.run_dir / "teacher/llmneo_model.json").read_text())
    assert teacher_meta["data"]["validation"] == 24 and teacher_meta["validation_metrics"]["n"] == 24


def test_a_process_that_needs_a_cache_being_built_waits_and_reads_it(tmp_path, tiny_bert_source, sst2_dir,
                                                                     monkeypatch):
    """Arms of `compare --jobs 2` that share a teacher cache: the second never runs the teacher again. This
    process plays the first: it holds the lock file, builds the cache (its own lock taken already), lets go."""
    import contextlib
    import fcntl
    import subprocess
    import sys
    import time

    from llmneo.cache.store import LogitCache

    path = write_tiny_config(tmp_path, tiny_bert_source, tiny_bert_source, sst2_dir,
                             teacher={"finetune": False}, student={"train": {"max_steps": 1}})
    config = load_config(path)
    cache = cache_for(config, student_splits(config))
    cache.folder.parent.mkdir(parents=True)
    with open(cache.lock_path, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as a first process building the cache holds it
        waiting = subprocess.Popen([sys.executable, "-m", "llmneo.cli", "cache", "--config", str(path)],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines = []
        for line in waiting.stdout:  # until it says it waits (it has loaded everything and reached the lock)
            lines.append(line)
            if "another process is building" in line:
                break
        time.sleep(2)
        assert waiting.poll() is None, "".join(lines)  # blocked on the lock, not building beside it
        monkeypatch.setattr(LogitCache, "exclusive", lambda self, enabled=True: contextlib.nullcontext())
        built = teacher_logits(config, student_splits(config))  # the first process's build, under `held`
        fcntl.flock(held, fcntl.LOCK_UN)
    output = "".join(lines) + waiting.communicate(timeout=300)[0]
    assert waiting.returncode == 0, output
    assert "reusing teacher logits" in output and "teacher logits train" not in output  # read, not rebuilt
    np.testing.assert_array_equal(cache.load().dev, built.dev)
