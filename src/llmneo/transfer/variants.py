"""Synthetic variants of the gold texts for the teacher to label: masked, replaced or n-gram.

Tang et al. (2019) and TinyBERT credit most of a small student's gain from distillation to the
teacher labelling many more inputs than the gold set holds. Each variant is made by one method, so
its provenance (source row, method) is exact:

- ``mask``: each word is replaced, with probability ``p_mask``, by the teacher tokenizer's own mask
  token (the teacher was pre-trained to read it);
- ``replace``: each word is replaced, with probability ``p_replace``, by another word: a nearest
  neighbour in the teacher's input-embedding table (a GloVe-like substitute that needs no download),
  or a word drawn by its frequency in the training texts;
- ``ngram``: a contiguous n-gram of the text (SST-2 itself labels phrases, so this is in-domain).

Measured on SST-2, these variants were 1.7-2.4 points *worse* than gold alone, so `augment.methods`
defaults to none: real unlabelled text (`llmneo.transfer.sets.unlabelled_pool`, or a user's file) is
what pays. Variants are deduplicated against each other and the training texts and capped at
``max_rows`` (a reported cut, never a silent one).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

from llmneo.progress import progress as show_progress
from llmneo.transfer.sets import AugmentError, TransferSet, normalise

__all__ = [
    "METHODS",
    "augment_texts",
    "embedding_neighbours",
    "frequency_vocabulary",
    "mask_words",
    "replace_words",
    "sample_ngram",
]

METHODS = ("mask", "replace", "ngram")


def mask_words(words: Sequence[str], rng: np.random.Generator, p_mask: float, mask_token: str) -> list[str]:
    """Each word becomes `mask_token` with probability `p_mask`; at least one word is masked."""
    hits = rng.random(len(words)) < p_mask
    if not hits.any():
        hits[rng.integers(len(words))] = True
    return [mask_token if hit else word for word, hit in zip(words, hits)]


def replace_words(words: Sequence[str], rng: np.random.Generator, p_replace: float,
                  substitute: Callable[[str, np.random.Generator], str | None]) -> list[str]:
    """Each word is swapped, with probability `p_replace`, for `substitute(word)` (None: it has none).

    At least one word is swapped when any can be, so a variant differs from its source.
    """
    hits = rng.random(len(words)) < p_replace
    replaced = [(substitute(word, rng) if hit else None) or word for word, hit in zip(words, hits)]
    if replaced == list(words):
        for position in rng.permutation(len(words)):
            if new := substitute(words[position], rng):
                replaced[position] = new
                break
    return replaced


def sample_ngram(words: Sequence[str], rng: np.random.Generator, min_n: int, max_n: int) -> list[str]:
    """A contiguous n-gram, n uniform in [min_n, max_n] and shorter than the text (else the text)."""
    longest = min(max_n, len(words) - 1)
    if longest < min_n:
        return list(words)
    n = int(rng.integers(min_n, longest + 1))
    start = int(rng.integers(0, len(words) - n + 1))
    return list(words[start:start + n])


def frequency_vocabulary(texts: Sequence[str], min_count: int = 2) -> tuple[list[str], np.ndarray]:
    """Words seen at least `min_count` times and their sampling probabilities (by frequency)."""
    counts = Counter(word for text in texts for word in text.split())
    words = sorted(word for word, count in counts.items() if count >= min_count)
    if not words:
        raise AugmentError(f"replace: no word occurs {min_count}+ times in the {len(texts)} source texts")
    weights = np.array([counts[w] for w in words], dtype=np.float64)
    return words, weights / weights.sum()


def embedding_neighbours(words: Sequence[str], token_ids: Sequence[int], embeddings: np.ndarray,
                         k: int = 10, chunk: int = 2048) -> dict[str, list[str]]:
    """The `k` nearest words (cosine, in the teacher's input-embedding table) of every word.

    `token_ids[i]` is the single vocabulary id of `words[i]`; embeddings: (V, H).
    """
    vectors = embeddings[np.asarray(token_ids)].astype(np.float32)  # (W, H)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True).clip(min=1e-8)
    neighbours: dict[str, list[str]] = {}
    for start in range(0, len(words), chunk):
        similarity = vectors[start:start + chunk] @ vectors.T  # (chunk, W)
        for row in range(similarity.shape[0]):
            similarity[row, start + row] = -np.inf  # a word is not its own neighbour
        nearest = np.argpartition(-similarity, kth=min(k, len(words) - 1) - 1, axis=1)[:, :k]  # (chunk, k)
        for row, indices in enumerate(nearest):
            neighbours[words[start + row]] = [words[i] for i in indices if i != start + row]
    return neighbours


def augment_texts(texts: Sequence[str], methods: Sequence[str], n_per_example: int, seed: int,
                  mask_token: str | None = None, p_mask: float = 0.15, p_replace: float = 0.15,
                  substitute: Callable[[str, np.random.Generator], str | None] | None = None,
                  ngram_range: tuple[int, int] = (2, 6), max_rows: int | None = None,
                  progress: bool = True) -> TransferSet:
    """`n_per_example` variants of every text, methods taken in turn, deduplicated and capped.

    Deterministic for a seed: one generator, texts visited in order. Texts of one word can only be
    masked or replaced; a variant equal to any source text or an earlier variant is dropped.
    """
    unknown = sorted(set(methods) - set(METHODS))
    if unknown or not methods:
        raise AugmentError(f"augment.methods: {unknown or 'empty'}; expected some of {list(METHODS)}")
    if "mask" in methods and not mask_token:
        raise AugmentError("augment.methods has 'mask' but the teacher's tokenizer has no mask token")
    if "replace" in methods and substitute is None:
        raise AugmentError("augment.methods has 'replace' but no substitute words were given")
    rng = np.random.default_rng(seed)
    seen = {normalise(text) for text in texts}
    kept: dict[str, tuple[int, str]] = {}
    candidates = 0
    rows = range(len(texts))
    if progress:
        rows = show_progress(rows, "augmenting", unit="text")
    for row in rows:
        words = texts[row].split()
        if not words:
            continue
        for variant in range(n_per_example):
            method = methods[(row + variant) % len(methods)]
            if method == "mask":
                new = mask_words(words, rng, p_mask, mask_token)
            elif method == "replace":
                new = replace_words(words, rng, p_replace, substitute)
            else:
                new = sample_ngram(words, rng, *ngram_range)
            candidates += 1
            text = " ".join(new)
            if text not in seen:
                seen.add(text)
                kept[text] = (row, method)
    if not kept:
        raise AugmentError(f"the transfer set is empty: all {candidates} variants of {len(texts)} texts "
                           "duplicate a source text or each other")
    texts_out = list(kept)
    capped_from = None
    if max_rows is not None and len(texts_out) > max_rows:
        order = np.sort(np.random.default_rng(seed + 1).permutation(len(texts_out))[:max_rows])
        capped_from, texts_out = len(texts_out), [texts_out[i] for i in order]
    meta = {"source_texts": len(texts), "candidates": candidates, "duplicates_dropped": candidates - len(kept),
            "kept": len(texts_out), "capped_from": capped_from, "methods": list(methods),
            "n_per_example": n_per_example, "seed": seed, "per_method": dict(Counter(kept[t][1] for t in texts_out))}
    return TransferSet(texts_out, [kept[t][0] for t in texts_out], [kept[t][1] for t in texts_out], meta)


