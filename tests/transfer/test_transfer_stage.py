"""A transfer set through the pipeline: its own cache (shared gold logits), KD-only rows, an ONNX
teacher for caching, and the ablation on tiny models."""

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import write_tiny_config
from llmneo.cache import stage as cache_stage
from llmneo.cache.stage import cache_for, teacher_logits
from llmneo.cli import app
from llmneo.config import load_config
from llmneo.distill.stage import training_rows
from llmneo.experiments.arms import load_arms
from llmneo.losses import IGNORE_LABEL
from llmneo.teacher.tune import run_teacher_stage
from llmneo.training.stage import run_splits as student_splits
from llmneo.transfer.stage import load_transfer_set

AUGMENT = {"enabled": True, "methods": ["mask", "replace", "ngram"], "n_per_example": 2, "replace_source": "embedding",
           "neighbours": 3}


@pytest.fixture(scope="module")
def tuned(tmp_path_factory, tiny_bert_source, sst2_dir):
    """A tiny run with its teacher tuned (one step) and its transfer set built."""
    folder = tmp_path_factory.mktemp("transfer")
    config = load_config(write_tiny_config(folder, tiny_bert_source, tiny_bert_source, sst2_dir, augment=AUGMENT,
                                           teacher={"train": {"max_steps": 1, "batch_size": 8, "eval_steps": 1}}))
    run_teacher_stage(config)
    return config


@pytest.mark.slow
def test_transfer_logits_have_their_own_cache_and_are_reused(tuned, monkeypatch):
    splits = student_splits(tuned)
    transfer = load_transfer_set(tuned, splits.train)
    assert transfer is not None and len(transfer) > 64  # two variants per text, less duplicates
    assert load_transfer_set(tuned, splits.train).texts == transfer.texts  # reused from the run folder
    cached = teacher_logits(tuned, splits, transfer=transfer)
    assert cached.transfer.shape == (len(transfer), 2) and cached.train.shape == (64, 2)
    gold_cache, transfer_cache = cache_for(tuned, splits), cache_for(tuned, splits, transfer)
    assert gold_cache.exists() and transfer_cache.exists() and gold_cache.folder != transfer_cache.folder

    def unloadable(*_args, **_kwargs):
        raise AssertionError("the teacher was loaded although every logit is cached")
    monkeypatch.setattr(cache_stage, "load_live_teacher", unloadable)
    again = teacher_logits(tuned, splits, transfer=transfer)
    np.testing.assert_array_equal(again.transfer, cached.transfer)
    gold_only = teacher_logits(tuned, splits)  # a gold-only run shares the gold logits
    assert gold_only.transfer is None
    np.testing.assert_array_equal(gold_only.train, cached.train)

    texts, labels, logits = training_rows(tuned, splits, transfer, cached)
    assert texts == splits.train.texts + transfer.texts and len(logits) == len(texts)
    assert labels[:64] == splits.train.labels and set(labels[64:]) == {IGNORE_LABEL}  # KD alone on them
    hard = load_config(tuned_path(tuned), ["augment.teacher_labels=hard"])
    _, hard_labels, _ = training_rows(hard, splits, transfer, cached)
    assert hard_labels[64:] == cached.transfer.argmax(axis=1).tolist()


def tuned_path(config):
    return config.run_dir.parent.parent / "tiny.yaml"


@pytest.mark.slow
def test_at_alpha_zero_the_teacher_runs_on_dev_and_the_transfer_set_only(tuned, tmp_path, monkeypatch):
    """CE on the gold rows and KD alone on the unlabelled ones: the gold training rows never go through
    the teacher (their logits are zeros that the loss never reads), unless a cache already holds them."""
    splits = student_splits(tuned)
    transfer = load_transfer_set(tuned, splits.train)
    fresh = load_config(tuned_path(tuned), ["loss.alpha=0", f"cache.dir={tmp_path / 'cache'}"])
    cached = teacher_logits(fresh, splits, transfer=transfer)
    assert cached.train is None and cached.dev.shape == (32, 2) and cached.transfer.shape == (len(transfer), 2)
    assert cached.teacher_dev_metrics["n"] == 32  # the teacher's dev accuracy is still measured
    dev_cache = cache_for(fresh, splits, dev_only=True)
    assert [path.name for path in dev_cache.folder.glob("*.safetensors")] == ["dev.safetensors"]
    assert not cache_for(fresh, splits).exists()
    np.testing.assert_allclose(cached.dev, teacher_logits(tuned, splits).dev, atol=1e-6)

    texts, labels, logits = training_rows(fresh, splits, transfer, cached)
    assert len(texts) == len(labels) == len(logits) == 64 + len(transfer)
    assert not logits[:64].any() and labels[:64] == splits.train.labels
    np.testing.assert_array_equal(logits[64:], cached.transfer)

    def unloadable(*_args, **_kwargs):
        raise AssertionError("the teacher was loaded although every logit is cached")
    monkeypatch.setattr(cache_stage, "load_live_teacher", unloadable)
    assert teacher_logits(fresh, splits, transfer=transfer).train is None  # the dev-only cache, reused
    shared = load_config(tuned_path(tuned), ["loss.alpha=0"])  # the run's own cache holds train already
    np.testing.assert_array_equal(teacher_logits(shared, splits).train, teacher_logits(tuned, splits).train)


@pytest.mark.slow
def test_a_run_at_alpha_zero_trains_its_student_without_gold_logits(tmp_path, tiny_bert_source, sst2_dir):
    path = write_tiny_config(tmp_path, tiny_bert_source, tiny_bert_source, sst2_dir, loss={"alpha": 0.0},
                             augment={"enabled": True, "rest_of_train": True, "methods": [], "max_rows": 48})
    result = CliRunner().invoke(app, ["run", "--config", str(path)])
    assert result.exit_code == 0, result.output[-2000:]
    assert "the teacher skips them and reads dev" in result.output
    config = load_config(path)
    metrics = json.loads((config.run_dir / "metrics.json").read_text())
    assert metrics["data"]["transfer"] == 48 and metrics["final"]["n"] == 32
    assert 0 <= metrics["final"]["agreement"] <= 1  # against the dev logits, which are cached
    gold_caches = [meta for meta in Path(config.cache.dir).glob("*/meta.json")
                   if "transfer_fingerprint" not in json.loads(meta.read_text())["key"]]
    assert [sorted(json.loads(meta.read_text())["sizes"]) for meta in gold_caches] == [["dev"]]


@pytest.mark.slow
def test_an_onnx_teacher_caches_the_same_logits_as_torch(tuned):
    splits = student_splits(tuned)
    torch_logits = teacher_logits(tuned, splits)
    onnx_config = load_config(tuned_path(tuned), ["cache.backend=onnx", f"cache.dir={tuned.run_dir / 'onnx-cache'}"])
    onnx_logits = teacher_logits(onnx_config, splits)
    np.testing.assert_allclose(onnx_logits.train, torch_logits.train, atol=1e-4)
    np.testing.assert_allclose(onnx_logits.dev, torch_logits.dev, atol=1e-4)
    assert (tuned.run_dir / "teacher" / "export" / "onnx-fp32" / "model.onnx").is_file()


@pytest.mark.slow
def test_reduced_best_cpu_recipe_and_its_ablation_end_to_end(tmp_path, tiny_bert_source, sst2_dir):
    """configs/best-cpu.yaml's recipe on tiny models: run, then the ablation with two arms under a cap.
    The student is cut from the run's own tuned teacher as the shipped one is: first and last layer of
    the 4, every feed-forward block at half width."""
    import yaml

    shipped = yaml.safe_load(Path("configs/best-cpu.yaml").read_text())
    assert shipped["student"]["name_or_path"] == "run:teacher"
    path = write_tiny_config(tmp_path, tiny_bert_source, tiny_bert_source, sst2_dir,
                             augment={**shipped["augment"], "n_per_example": 1, "max_rows": 96},
                             loss=shipped["loss"], cache={"backend": shipped["cache"]["backend"]},
                             student={"name_or_path": "run:teacher", "keep_layers": [0, 3], "ffn_width": 32,
                                      "lora": shipped["student"]["lora"]})
    runner = CliRunner()
    result = runner.invoke(app, ["run", "--config", str(path)])
    assert result.exit_code == 0, result.output[-2000:]
    config = load_config(path)
    metrics = json.loads((config.run_dir / "metrics.json").read_text())
    assert metrics["data"]["transfer"] > 0 and metrics["final"]["n"] == 32
    student = json.loads((config.run_dir / "student" / "config.json").read_text())
    assert (student["num_hidden_layers"], student["intermediate_size"]) == (2, 32)
    result = runner.invoke(app, ["compare", "--config", str(path), "--minutes", "0.5",
                                 "--arm", "ce-gold: loss.alpha=0 augment.enabled=false", "--arm", "kd-recipe:"])
    assert result.exit_code == 0, result.output[-2000:]
    table = (config.run_dir / "ablation.md").read_text()
    assert "| ce-gold |" in table and "| kd-recipe |" in table
    rows = json.loads((config.run_dir / "ablation.json").read_text())
    assert [row["arm"] for row in rows] == ["ce-gold", "kd-recipe"] and all(row["steps"] > 0 for row in rows)
    assert (config.run_dir / "ablation.png").read_bytes()[:4] == b"\x89PNG"
    assert "is already tuned with this teacher and data config" in result.output
    assert "reusing teacher logits" in result.output


def test_the_shipped_arms_and_the_kd_on_gold_arm_distils_even_when_the_recipe_learns_gold_by_ce(
        tmp_path, tiny_bert_source, sst2_dir):
    from llmneo.experiments.ablation import arm_config

    arms = load_arms(None, "arms")
    assert list(arms) == ["ce-gold", "kd-gold", "ce-gold+teacher-hard", "kd-recipe"]
    recipe_at_alpha_zero = load_config(write_tiny_config(tmp_path, tiny_bert_source, tiny_bert_source, sst2_dir),
                                       ["loss.alpha=0"])
    kd_gold = arm_config(recipe_at_alpha_zero, "kd-gold", arms["kd-gold"], minutes=1)
    assert kd_gold.loss.alpha == 0.5 and not kd_gold.augment.enabled
    assert arm_config(recipe_at_alpha_zero, "ce-gold", arms["ce-gold"], minutes=1).loss.alpha == 0


def test_an_arms_file_of_ones_own_is_validated_like_the_config(tmp_path, tiny_bert_source, sst2_dir):
    path = write_tiny_config(tmp_path, tiny_bert_source, tiny_bert_source, sst2_dir)
    arms = tmp_path / "arms.yaml"
    arms.write_text("arms:\n  warm: {loss.temperature: 4}\n  typo: {loss.temprature: 4}\n")
    result = CliRunner().invoke(app, ["compare", "--config", str(path), "--arms", str(arms)])
    assert result.exit_code == 2
    assert "ablation arm 'typo': loss.temprature: unknown key (did you mean loss.temperature?)" in result.output
    assert not (tmp_path / "outputs").exists()  # checked before the teacher was tuned
    arms.write_text("arm:\n  warm: {loss.temperature: 4}\n")
    result = CliRunner().invoke(app, ["compare", "--config", str(path), "--arms", str(arms)])
    assert result.exit_code == 2 and "arms.yaml: arm: unknown key" in result.output


def test_a_bad_arm_names_its_key(tmp_path, tiny_bert_source, sst2_dir):
    path = write_tiny_config(tmp_path, tiny_bert_source, tiny_bert_source, sst2_dir)
    result = CliRunner().invoke(app, ["compare", "--config", str(path), "--arm", "x: loss.alpah=0"])
    assert result.exit_code == 2 and "loss.alpah: unknown key" in result.output


def test_rest_of_train_is_the_split_outside_the_labelled_rows_without_labels(tmp_path, tiny_bert_source, sst2_dir):
    from llmneo.data import load_splits
    from llmneo.transfer.stage import transfer_path

    path = write_tiny_config(tmp_path, tiny_bert_source, tiny_bert_source, sst2_dir,
                             augment={"enabled": True, "rest_of_train": True, "methods": [], "max_rows": 500})
    config = load_config(path)
    gold = student_splits(config).train
    transfer = load_transfer_set(config, gold)
    everything = load_splits(config.data.model_copy(update={"max_train_samples": None})).train
    assert len(transfer) == 500 and transfer.meta["capped_from"] > 60_000  # the 67,349 less the 64, less repeats
    assert not set(transfer.texts) & set(gold.texts) and set(transfer.methods) == {"pool"}
    assert all(everything.texts[row] == text for row, text in zip(transfer.source_rows, transfer.texts))
    rows = [json.loads(line) for line in transfer_path(config).read_text().splitlines()]
    assert all(set(row) == {"sentence", "source_row", "method"} for row in rows)  # no label travels with a row
    with pytest.raises(Exception, match="augment.enabled, but the transfer set has no source: set augment.rest_of_train"):
        load_config(path, ["augment.rest_of_train=false"])


@pytest.mark.slow
def test_compare_trains_arms_side_by_side_in_processes_nested_under_the_ablation_run(
        tmp_path, tiny_bert_source, sst2_dir, monkeypatch):
    """`compare --jobs 2`: both arms train at once in child processes, each on one of the two threads'
    worth, logging to its own file, their MLflow runs children of the ablation's run; `--resume` keeps them."""
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    path = write_tiny_config(tmp_path, tiny_bert_source, tiny_bert_source, sst2_dir, tracking={
        "enabled": True, "tracking_uri": uri, "experiment": "arms", "log_model": False, "log_system_metrics": False})
    arms = ["--arm", "ce: loss.alpha=0 student.train.max_steps=3", "--arm", "kd: student.train.max_steps=3"]
    result = CliRunner().invoke(app, ["compare", "--config", str(path), "--minutes", "1", "--jobs", "2", *arms])
    assert result.exit_code == 0, result.output[-2000:]
    run_dir = load_config(path).run_dir
    rows = json.loads((run_dir / "ablation.json").read_text())
    assert [row["arm"] for row in rows] == ["ce", "kd"] and all(row["steps"] == 3 for row in rows)
    for arm in ("ce", "kd"):
        log = (run_dir / "ablation" / arm / "train.log").read_text()
        assert "[student] dev accuracy" in log  # the child's own output, not the parent's console
        assert load_config(run_dir / "ablation" / arm / "config.yaml").student.train.num_threads == 1
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("arms")
    runs = {run.info.run_name: run for run in client.search_runs([experiment.experiment_id])}
    parent = runs["tiny-ablation"].info.run_id
    for arm in ("ce", "kd"):
        child = runs[f"{arm}-student"]
        assert child.data.tags["mlflow.parentRunId"] == parent and child.info.status == "FINISHED"
    again = CliRunner().invoke(app, ["compare", "--config", str(path), "--minutes", "1", "--jobs", "2", "--resume", *arms])
    assert again.exit_code == 0 and again.output.count("already trained with this recipe, kept") == 2, again.output[-2000:]


@pytest.mark.slow
def test_an_arm_that_fails_in_its_process_is_named_with_its_log(tmp_path, tiny_bert_source, sst2_dir):
    path = write_tiny_config(tmp_path, tiny_bert_source, tiny_bert_source, sst2_dir)
    arms = ["--arm", "ok: student.train.max_steps=1", "--arm", f"broken: student.name_or_path={tmp_path / 'missing'}"]
    result = CliRunner().invoke(app, ["compare", "--config", str(path), "--minutes", "1", "--jobs", "2", *arms])
    assert result.exit_code != 0
    log = load_config(path).run_dir / "ablation" / "broken" / "train.log"
    assert f"[ablation] broken failed; its output is in {log}" in result.output
    assert "missing" in log.read_text()  # the child's own traceback names the path it could not load
