"""The final dev report reuses the evaluation of the weights training ended with, in dev order."""

import numpy as np
import pytest

from conftest import write_tiny_config
from llmneo.config import load_config
from llmneo.inference import Predictor
from llmneo.training.pipeline import run_cache_stage, run_distill_stage, run_teacher_stage, student_splits


def test_keep_best_reports_the_best_evaluation_of_the_saved_weights(tmp_path, tiny_bert_source, sst2_dir):
    """With keep_best the stage ends on the best evaluated step. Its report is that evaluation (same
    accuracy and loss as the history's best entry), taken on length-sorted dev and put back in dev order:
    the saved student, reloaded, gives the same logits row for row."""
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
    # The tiny model ties at chance, so the kept weights are step 2's, not the last: the report must say so.
    assert best["step"] < evaluations[-1]["step"] and best["eval_loss"] != evaluations[-1]["eval_loss"]
    assert outcome.final["accuracy"] == pytest.approx(best["eval_accuracy"])
    assert outcome.final["eval_loss"] == pytest.approx(best["eval_loss"])
    reloaded = Predictor.load(config.run_dir / "student").predict_logits(student_splits(config).dev.texts)
    np.testing.assert_allclose(reloaded, outcome.dev_logits, atol=1e-4)
