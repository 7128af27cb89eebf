"""The transfer set: each method on a fixed seed, deduplication, the cap, and bad input."""

import json

import numpy as np
import pytest

from llmneo.transfer.sets import (
    AugmentError,
    join_transfer_sets,
    read_transfer_set,
    unlabelled_pool,
    write_transfer_set,
)
from llmneo.transfer.variants import (
    augment_texts,
    embedding_neighbours,
    frequency_vocabulary,
    mask_words,
    replace_words,
    sample_ngram,
)

TEXTS = ["a gorgeous , witty , seductive movie", "the film is a dull , tedious mess",
         "an astonishing performance", "it 's not a bad film at all", "bad"]
NEIGHBOURS = {"gorgeous": ["beautiful"], "dull": ["boring"], "bad": ["poor"], "film": ["movie"], "movie": ["film"]}


def substitute(word, rng):
    options = NEIGHBOURS.get(word)
    return options[int(rng.integers(len(options)))] if options else None


def test_mask_replace_and_ngram_by_hand():
    rng = np.random.default_rng(0)
    words = ["the", "film", "is", "a", "dull", "mess"]
    masked = mask_words(words, rng, 0.3, "[MASK]")
    assert len(masked) == len(words) and "[MASK]" in masked
    assert all(m in (w, "[MASK]") for m, w in zip(masked, words))
    replaced = replace_words(words, rng, 0.0, substitute)  # p=0 still swaps one word that has a substitute
    assert replaced != words and sum(a != b for a, b in zip(replaced, words)) == 1
    assert {b for a, b in zip(words, replaced) if a != b} <= {"movie", "boring"}
    assert replace_words(["zzz", "qqq"], rng, 1.0, substitute) == ["zzz", "qqq"]  # nothing to swap
    for _ in range(20):
        gram = sample_ngram(words, rng, 2, 4)
        assert 2 <= len(gram) <= 4 and " ".join(gram) in " ".join(words)
    assert sample_ngram(["bad"], rng, 2, 4) == ["bad"]


@pytest.mark.parametrize("methods", [["mask"], ["replace"], ["ngram"], ["mask", "replace", "ngram"]])
def test_each_method_is_deterministic_deduplicated_and_never_empty(methods):
    first = augment_texts(TEXTS, methods, 4, seed=7, mask_token="[MASK]", substitute=substitute, progress=False)
    again = augment_texts(TEXTS, methods, 4, seed=7, mask_token="[MASK]", substitute=substitute, progress=False)
    other = augment_texts(TEXTS, methods, 4, seed=8, mask_token="[MASK]", substitute=substitute, progress=False)
    assert first.texts == again.texts and first.source_rows == again.source_rows
    assert first.texts != other.texts
    assert len(first) > 0 and len(set(first.texts)) == len(first.texts)
    assert not set(first.texts) & set(TEXTS)  # nothing repeats a gold text
    assert set(first.methods) <= set(methods)
    for text, row, method in zip(first.texts, first.source_rows, first.methods):
        if method == "ngram":
            assert text in TEXTS[row]
        if method == "mask":
            assert "[MASK]" in text and len(text.split()) == len(TEXTS[row].split())
    meta = first.meta
    assert meta["candidates"] == meta["kept"] + meta["duplicates_dropped"]


def test_cap_is_reported_not_silent():
    full = augment_texts(TEXTS, ["mask", "ngram"], 6, seed=1, mask_token="[MASK]", progress=False)
    capped = augment_texts(TEXTS, ["mask", "ngram"], 6, seed=1, mask_token="[MASK]", max_rows=5, progress=False)
    assert len(capped) == 5 and capped.meta["capped_from"] == len(full)
    assert set(capped.texts) <= set(full.texts)


def test_all_duplicates_and_bad_settings_are_one_line_errors():
    with pytest.raises(AugmentError, match="empty: all 3 variants"):
        augment_texts(["bad", "good", "fine"], ["ngram"], 1, seed=0, progress=False)  # one-word n-grams = sources
    with pytest.raises(AugmentError, match="no mask token"):
        augment_texts(TEXTS, ["mask"], 1, seed=0, mask_token=None, progress=False)
    with pytest.raises(AugmentError, match="augment.methods"):
        augment_texts(TEXTS, ["shuffle"], 1, seed=0, progress=False)


def test_embedding_neighbours_are_the_nearest_rows():
    table = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [-1.0, 0.0]])
    neighbours = embedding_neighbours(["good", "great", "bad", "awful", "meh"], [0, 1, 2, 3, 4], table, k=1)
    assert neighbours == {"good": ["great"], "great": ["good"], "bad": ["awful"], "awful": ["bad"],
                          "meh": ["bad"]}  # cosine 0 beats the negative ones
    words, probabilities = frequency_vocabulary(["a b b", "b c"], min_count=1)
    assert words == ["a", "b", "c"] and probabilities.tolist() == pytest.approx([0.2, 0.6, 0.2])


def test_write_then_read_round_trip_and_user_files(tmp_path):
    transfer = augment_texts(TEXTS, ["mask"], 2, seed=0, mask_token="[MASK]", progress=False)
    path = write_transfer_set(transfer, tmp_path / "transfer.jsonl")
    again = read_transfer_set(path)
    assert again.texts == transfer.texts and again.source_rows == transfer.source_rows
    meta = json.loads((tmp_path / "transfer.jsonl.meta.json").read_text())
    assert meta["rows"] == len(transfer) and meta["fingerprint"] == transfer.fingerprint()
    plain = tmp_path / "mine.txt"
    plain.write_text("one review\n\nanother review\n")
    assert read_transfer_set(plain).texts == ["one review", "another review"]
    garbage = tmp_path / "garbage.tsv"
    garbage.write_text("sentence\tlabel\na fine film\t\nawful\tmaybe\n")
    with pytest.raises(AugmentError, match=r"garbage.tsv:3: column 'label' holds 'maybe'"):
        read_transfer_set(garbage)
    duplicated = tmp_path / "dup.txt"
    duplicated.write_text("same\nsame\n")
    kept_once = read_transfer_set(duplicated)
    assert kept_once.texts == ["same"] and kept_once.meta["repeats_dropped"] == 1  # counted, not silent
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    with pytest.raises(AugmentError, match="empty"):
        read_transfer_set(empty)


def test_the_unlabelled_pool_holds_the_texts_outside_the_labelled_ones_once_each():
    everything = ["good film", "bad  film", "good film", "a plot", "dull", "a plot"]
    pool = unlabelled_pool(everything, labelled=["dull", "bad film"])
    assert pool.texts == ["good film", "a plot"]  # whitespace-normalised, repeats and labelled texts out
    assert pool.source_rows == [0, 3] and pool.methods == ["pool", "pool"]  # provenance: rows of `everything`
    assert pool.meta["duplicates_dropped"] == 2
    with pytest.raises(AugmentError, match="the unlabelled pool is empty"):
        unlabelled_pool(["dull"], labelled=["dull"])


def test_joined_transfer_sets_drop_repeats_and_cap_with_a_report():
    pool = unlabelled_pool(["good film", "a plot", "fine"], labelled=[])
    variants = augment_texts(TEXTS, ["ngram"], 2, seed=3, progress=False)
    joined = join_transfer_sets([pool, variants], max_rows=None, seed=0)
    assert joined.texts[:3] == ["good film", "a plot", "fine"] and len(set(joined.texts)) == len(joined)
    assert joined.meta["per_method"]["pool"] == 3
    capped = join_transfer_sets([pool, variants], max_rows=4, seed=0)
    assert len(capped) == 4 and capped.meta["capped_from"] == len(joined)
    assert capped.texts == join_transfer_sets([pool, variants], max_rows=4, seed=0).texts  # seeded
