"""Vocabulary pruning: the token table shrinks to the pieces some texts use, and a text whose pieces were
all kept gets the same logits from the pruned folder as from the original."""

from __future__ import annotations

import numpy as np
from typer.testing import CliRunner

from conftest import minilm_tokenizer, tiny_mpnet
from llmneo.cli import app
from llmneo.inference import Predictor
from llmneo.inference.vocab import prune_vocabulary
from llmneo.maths.params import count_parameters
from llmneo.modelfolder.weights import LoadedModel, save_model_folder


def test_a_pruned_folder_scores_covered_texts_exactly_as_the_original(tmp_path):
    source = tmp_path / "student"
    model = tiny_mpnet(layers=2)
    meta = {"role": "student", "labels": ["negative", "positive"], "max_length": 32, "parameters": count_parameters(model)}
    save_model_folder(LoadedModel(model, minilm_tokenizer(), "classifier"), source, meta)
    train = ["a gorgeous , witty film", "a dull and tedious mess", "the best movie of the year"]
    check = ["a witty film", "a tedious movie", "an xylophone symphony"]  # the last needs pieces train never used
    report = prune_vocabulary(source, train, tmp_path / "pruned", check)
    assert report.kept < 60 and report.of == 30522
    assert report.parameters_after < report.parameters_before - 30_000 * 32 * 0.9
    assert report.texts_with_a_dropped_token == 1 and report.largest_logit_difference < 1e-5
    original = Predictor.load(source).predict_logits(check[:2])
    pruned = Predictor.load(tmp_path / "pruned").predict_logits(check[:2])
    np.testing.assert_allclose(pruned, original, atol=1e-5)
    assert Predictor.load(tmp_path / "pruned").meta["vocabulary"]["kept"] == report.kept


def test_the_prune_command_writes_the_smaller_folder_and_reports_its_check(tmp_path):
    source = tmp_path / "student"
    meta = {"role": "student", "labels": ["negative", "positive"], "max_length": 32,
            "parameters": count_parameters(tiny_mpnet(layers=2))}
    save_model_folder(LoadedModel(tiny_mpnet(layers=2), minilm_tokenizer(), "classifier"), source, meta)
    (tmp_path / "train.tsv").write_text("sentence\tlabel\na gorgeous , witty film\t1\na dull and tedious mess\t0\n")
    (tmp_path / "dev.txt").write_text("a witty film\nan xylophone symphony\n")
    result = CliRunner().invoke(app, ["prune", str(source), "--texts", str(tmp_path / "train.tsv"),
                                      "--out", str(tmp_path / "pruned"), "--check", str(tmp_path / "dev.txt")])
    assert result.exit_code == 0, result.output
    assert "of 30,522 tokens kept" in result.output and "on 2 check texts: 1 need a dropped token" in result.output
    assert Predictor.load(tmp_path / "pruned").meta["vocabulary"]["of"] == 30522
    missing = CliRunner().invoke(app, ["prune", str(tmp_path / "nope"), "--texts", str(tmp_path / "train.tsv"),
                                       "--out", str(tmp_path / "x")])
    assert missing.exit_code != 0 and "no such folder" in missing.output
