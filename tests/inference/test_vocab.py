"""Vocabulary pruning: the token table shrinks to the pieces some texts use, and a text whose pieces were
all kept gets the same logits from the pruned folder as from the original."""

from __future__ import annotations

import numpy as np

from conftest import minilm_tokenizer, tiny_mpnet
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
