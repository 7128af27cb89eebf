"""A validation split carved from the training data, so that dev is touched once per finished model.

Choosing checkpoints and recipes on dev flatters whatever was chosen: on SST-2 the best student's gap
to its teacher was 1.5 points on dev and 3.2 on a test set nobody picked on. The validation split
takes that role instead; dev becomes a test.

A random sample of training rows is not enough on a treebank like SST-2, whose training rows are the
phrases of its sentences: a validation phrase would sit inside a training sentence whose label the
model has learnt, so validation would reward memorising. Here validation rows are drawn among the
*maximal* rows (those no other row contains, word for word: SST-2's full sentences, about 6,900 of
67,349), and every training row a validation row contains (its phrases) leaves the training split.
On data without nested rows every row is maximal and nothing more is dropped: a plain stratified split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from llmneo.data.labeled import DataError, LabeledTexts

__all__ = ["ValidationCut", "carve_validation", "maximal_rows", "word_spans"]


@dataclass
class ValidationCut:
    train: LabeledTexts
    validation: LabeledTexts
    dropped_contained: int  # training rows left out because a validation row contains them


def _words(text: str) -> list[str]:
    return text.split()


def word_spans(text: str, proper: bool = False) -> set[str]:
    """Every contiguous run of words of `text` (without the whole text itself when `proper`)."""
    words = _words(text)
    count = len(words)
    return {" ".join(words[start:end]) for start in range(count) for end in range(start + 1, count + 1)
            if not (proper and end - start == count)}


def maximal_rows(texts: Sequence[str]) -> np.ndarray:
    """Indices of the rows whose text no other row contains as a run of words (duplicates count once).

    Spans are kept as hashes: SST-2's train has 5.5M of them, 1.5M distinct, 3-4 s on one core.
    """
    contained: set[int] = set()
    for text in texts:
        words = _words(text)
        count = len(words)
        for start in range(count):
            for end in range(start + 1, count + 1):
                if end - start < count:
                    contained.add(hash(" ".join(words[start:end])))
    return np.array([i for i, text in enumerate(texts) if hash(" ".join(_words(text))) not in contained],
                    dtype=np.int64)


def _stratified_pick(candidates: np.ndarray, labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    from sklearn.model_selection import train_test_split

    counts = np.bincount(labels[candidates])
    stratify = labels[candidates] if counts[counts > 0].min() >= 2 and size >= len(counts[counts > 0]) else None
    chosen, _ = train_test_split(candidates, train_size=size, random_state=seed, stratify=stratify)
    return np.sort(chosen)


def carve_validation(train: LabeledTexts, size: int, seed: int) -> ValidationCut:
    """`size` maximal rows (seeded, stratified by label) as validation; the rest, less what they contain,
    as training rows. Refused, naming the numbers, when the training data cannot spare them."""
    normalised = [" ".join(_words(text)) for text in train.texts]
    candidates = maximal_rows(normalised)
    # a maximal text repeated under several rows is one candidate: its twins would stay in train otherwise
    _, first = np.unique(np.asarray(normalised, dtype=object)[candidates], return_index=True)
    candidates = np.sort(candidates[first])
    if size >= len(candidates):
        raise DataError(f"data.validation_size: {size:,} validation rows asked, but {train.source} has only "
                        f"{len(candidates):,} rows that no other row contains; lower it")
    chosen = _stratified_pick(candidates, np.asarray(train.labels), size, seed)
    validation_texts = {normalised[i] for i in chosen}
    spans: set[str] = set()
    for text in validation_texts:
        spans |= word_spans(text)
    keep = [i for i, text in enumerate(normalised) if text not in spans]
    if not keep:
        raise DataError(f"data.validation_size: {size:,} validation rows leave no training row in {train.source}")
    dropped = len(train) - len(keep) - len(chosen)
    validation = train.subset(chosen)
    validation.source = f"{train.source} (validation)"
    return ValidationCut(train.subset(keep), validation, dropped)
