"""One accuracy per model: the final report is the saved model's, read back as `evaluate` and the server read it."""

import numpy as np
import pytest

from conftest import write_tiny_config
from llmneo.cache.stage import run_cache_stage
from llmneo.config import load_config
from llmneo.distill.stage import run_distill_stage
from llmneo.inference import Predictor
from llmneo.modelfolder import read_model_meta
from llmneo.teacher.tune import run_teacher_stage
from llmneo.training.stage import run_splits


def test_keep_best_reports_the_best_checkpoint_as_the_saved_model_scores_it(tmp_path, tiny_bert_source, sst2_dir):
    """With keep_best the stage saves the best evaluated step. Its report is that model read back in fp32: the
    same accuracy as the best evaluation (no autocast here), and the logits a reloaded student gives, row
    for row; the folder's recorded metrics are the same figures (what /info serves)."""
    steps = {"max_steps": 8, "batch_size": 8, "eval_steps": 2, "save_steps": 2, "logging_steps": 1,
             "learning_rate": 3e-2, "keep_best": True}
    config = load_config(write_tiny_config(
        tmp_path, tiny_bert_source, tiny_bert_source, sst2_dir, teacher={"train": {**steps, "keep_best": False}},
        student={"lora": {"enabled": False}, "train": steps}))
    run_teacher_stage(config)
    run_cache_stage(config)
    outcome = run_distill_stage(config)
    evaluations = [entry for entry in outcome.history if "eval_accuracy" in entry]
    assert [entry["step"] for entry in evaluations] == [2, 4, 6, 8]
    best = max(evaluations, key=lambda entry: entry["eval_accuracy"])  # the first best, as Trainer keeps it
    assert outcome.final["accuracy"] == pytest.approx(best["eval_accuracy"])
    dev = run_splits(config).dev
    reloaded = Predictor.load(config.run_dir / "student").predict_logits(dev.texts)
    np.testing.assert_allclose(reloaded, outcome.dev_logits, atol=1e-5)
    assert outcome.final["accuracy"] == pytest.approx(float(np.mean(reloaded.argmax(1) == np.array(dev.labels))))
    assert read_model_meta(config.run_dir / "student")["metrics"]["accuracy"] == outcome.final["accuracy"]


def test_a_second_distill_keeps_the_student_and_force_trains_it_again(tmp_path, tiny_bert_source, sst2_dir, capsys):
    config = load_config(write_tiny_config(
        tmp_path, tiny_bert_source, tiny_bert_source, sst2_dir, teacher={"train": {"max_steps": 1, "eval_steps": 1}},
        student={"lora": {"enabled": False}, "train": {"max_steps": 2, "eval_steps": 2, "save_steps": 2}}))
    run_teacher_stage(config)
    first = run_distill_stage(config)
    written = (config.run_dir / "student" / "model.safetensors").stat().st_mtime_ns
    assert run_distill_stage(config) is None
    assert "already trained with this recipe" in capsys.readouterr().out
    assert (config.run_dir / "student" / "model.safetensors").stat().st_mtime_ns == written  # not overwritten
    changed = load_config(config.run_dir.parent.parent / "tiny.yaml", ["student.train.max_steps=4",
                                                                      "student.train.save_steps=2"])
    assert run_distill_stage(changed) is not None  # another recipe: trained, and said so by the stage
    again = run_distill_stage(changed, force=True)
    assert again is not None and again.final["n"] == first.final["n"]


def test_a_mixed_precision_evaluation_that_differs_from_the_fp32_read_back_is_explained():
    from llmneo.training.trainer import _read_back_note

    history = [{"step": 200, "eval_accuracy": 0.8544}, {"step": 688, "eval_accuracy": 0.8601}]
    note = _read_back_note(history, {"accuracy": 0.8589}, None, "bf16")
    assert note == ("dev accuracy 0.8589 read back in fp32, the figure `evaluate` and the server reproduce "
                    "(bf16 evaluation during training, step 688: 0.8601)")
    kept_best = _read_back_note(history, {"accuracy": 0.86, "validation": {"accuracy": 0.85}}, 200, "bf16")
    assert kept_best.startswith("validation accuracy 0.8500") and "step 200: 0.8544" in kept_best
    assert _read_back_note(history, {"accuracy": 0.8601}, None, "bf16") is None  # they agree: nothing to say
    assert _read_back_note(history, {"accuracy": 0.8589}, None, "no") is None  # fp32 throughout
