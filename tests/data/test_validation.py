"""The validation split: maximal rows only, their phrases out of training, seeded and stratified."""

from __future__ import annotations

import pytest

from llmneo.data import DataError, LabeledTexts
from llmneo.data.validation import carve_validation, maximal_rows, word_spans


def _treebank() -> LabeledTexts:
    """Six sentences and their phrases, as SST-2's training split nests them."""
    sentences = [("a gorgeous , witty film", 1), ("dull and lifeless throughout", 0), ("the best movie this year", 1),
                 ("a tedious mess of a plot", 0), ("warm and funny", 1), ("never once surprising", 0)]
    texts, labels = [], []
    for sentence, label in sentences:
        words = sentence.split()
        texts += [sentence, " ".join(words[:2]), words[-1]]
        labels += [label, label, label]
    return LabeledTexts(texts, labels, "treebank.tsv", list(range(2, len(texts) + 2)))


def test_word_spans_are_every_contiguous_run():
    assert word_spans("a b c") == {"a", "b", "c", "a b", "b c", "a b c"}
    assert word_spans("a b c", proper=True) == {"a", "b", "c", "a b", "b c"}


def test_maximal_rows_are_those_no_other_row_contains():
    data = _treebank()
    assert [data.texts[i] for i in maximal_rows(data.texts)] == [data.texts[i] for i in range(0, 18, 3)]
    assert list(maximal_rows(["one", "two", "three"])) == [0, 1, 2]  # flat data: every row


def test_validation_takes_sentences_and_their_phrases_leave_training():
    cut = carve_validation(_treebank(), size=2, seed=0)
    assert len(cut.validation) == 2
    assert sorted(cut.validation.labels) == [0, 1]  # stratified
    assert all(len(text.split()) >= 3 for text in cut.validation.texts)  # whole sentences
    for text in cut.train.texts:
        assert text not in word_spans(cut.validation.texts[0]) | word_spans(cut.validation.texts[1])
    assert cut.dropped_contained == 4  # two phrases of each validation sentence
    assert len(cut.train) == 18 - 2 - 4
    again = carve_validation(_treebank(), size=2, seed=0)
    assert again.validation.texts == cut.validation.texts  # seeded


def test_validation_larger_than_the_sentences_is_refused():
    with pytest.raises(DataError, match=r"data.validation_size: 6 validation rows asked.*only 6 rows"):
        carve_validation(_treebank(), size=6, seed=0)
