"""A transfer set: unlabelled variants of the training texts for the teacher to label.

Tang et al. (2019) and TinyBERT credit most of a small student's gain from distillation to the
teacher labelling many more inputs than the gold set holds. Each variant here is made by one
method, so its provenance (source row, method) is exact:

- ``mask``: each word is replaced, with probability ``p_mask``, by the teacher tokenizer's own mask
  token (the teacher was pre-trained to read it);
- ``replace``: each word is replaced, with probability ``p_replace``, by another word: a nearest
  neighbour in the teacher's input-embedding table (a GloVe-like substitute that needs no download),
  or a word drawn by its frequency in the training texts;
- ``ngram``: a contiguous n-gram of the text (SST-2 itself labels phrases, so this is in-domain);
- ``pool``: real in-domain texts without labels (`unlabelled_pool`): the training split's texts left
  out of the labelled subsample, their labels never read. This is the setting distillation exists
  for: few labels, plenty of text, and a teacher to label it.

Variants are deduplicated against each other and against the training texts, the set is capped at
``max_rows`` (a reported skip, never a silent one), and it is written atomically as JSONL with a
meta file. Nothing here reads the GLUE test sentences: only the training texts and files a user
names go in.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from llmneo.atomic import atomic_path, write_text_atomic

__all__ = [
    "AugmentError",
    "TransferSet",
    "augment_texts",
    "embedding_neighbours",
    "frequency_vocabulary",
    "join_transfer_sets",
    "mask_words",
    "read_transfer_set",
    "replace_words",
    "sample_ngram",
    "unlabelled_pool",
    "write_transfer_set",
]

METHODS = ("mask", "replace", "ngram")


class AugmentError(ValueError):
    """A transfer set that cannot be built or read, phrased as one line naming the cause."""


@dataclass
class TransferSet:
    """Unlabelled texts with where each came from (`source_rows[i]` indexes the source texts)."""

    texts: list[str]
    source_rows: list[int]
    methods: list[str]
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.texts)

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for text in self.texts:
            digest.update(f"{text}\n".encode())
        return digest.hexdigest()[:16]


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


def _normalise(text: str) -> str:
    return " ".join(text.split())


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
    seen = {_normalise(text) for text in texts}
    kept: dict[str, tuple[int, str]] = {}
    candidates = 0
    rows = range(len(texts))
    if progress:
        from tqdm.auto import tqdm

        rows = tqdm(rows, desc="augmenting", unit="text", mininterval=2)
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


def unlabelled_pool(texts: Sequence[str], labelled: Sequence[str]) -> TransferSet:
    """The `texts` not among the `labelled` ones, deduplicated, as transfer rows (method ``pool``).

    `source_rows[i]` indexes `texts`; only texts are taken, so no label can leak into the set.
    """
    seen = {_normalise(text) for text in labelled}
    kept: dict[str, int] = {}
    for row, text in enumerate(texts):
        text = _normalise(text)
        if text and text not in seen and text not in kept:
            kept[text] = row
    if not kept:
        raise AugmentError(f"the unlabelled pool is empty: all {len(texts)} texts are labelled ones or repeats")
    meta = {"pool_texts": len(texts), "labelled_texts": len(labelled), "kept": len(kept),
            "duplicates_dropped": len(texts) - len(labelled) - len(kept)}
    return TransferSet(list(kept), list(kept.values()), ["pool"] * len(kept), meta)


def join_transfer_sets(parts: Sequence[TransferSet], max_rows: int | None, seed: int) -> TransferSet:
    """Several transfer sets as one: a text already in an earlier part is dropped, then the whole is capped
    at `max_rows` by a seeded draw (reported in the meta, like `augment_texts`' own cap)."""
    texts: dict[str, tuple[int, str]] = {}
    for part in parts:
        for text, row, method in zip(part.texts, part.source_rows, part.methods):
            texts.setdefault(text, (row, method))
    ordered = list(texts)
    capped_from = None
    if max_rows is not None and len(ordered) > max_rows:
        order = np.sort(np.random.default_rng(seed + 1).permutation(len(ordered))[:max_rows])
        capped_from, ordered = len(ordered), [ordered[i] for i in order]
    meta = {"parts": [part.meta for part in parts], "kept": len(ordered), "capped_from": capped_from,
            "duplicates_dropped": sum(len(part) for part in parts) - len(texts),
            "per_method": dict(Counter(texts[t][1] for t in ordered))}
    return TransferSet(ordered, [texts[t][0] for t in ordered], [texts[t][1] for t in ordered], meta)


def write_transfer_set(transfer: TransferSet, path: str | Path) -> Path:
    """JSONL rows {sentence, source_row, method} and `<path>.meta.json`, each written atomically."""
    path = Path(path)
    with atomic_path(path) as temp, open(temp, "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps({"sentence": text, "source_row": row, "method": method}) + "\n" for text, row, method in zip(transfer.texts, transfer.source_rows, transfer.methods))
    meta = {**transfer.meta, "fingerprint": transfer.fingerprint(), "rows": len(transfer)}
    write_text_atomic(path.with_suffix(path.suffix + ".meta.json"), json.dumps(meta, indent=2))
    return path


def read_transfer_set(path: str | Path, text_column: str = "sentence") -> TransferSet:
    """Read a transfer set written by `write_transfer_set`, or any JSONL/TSV/CSV/text file of texts.

    A user's own unlabelled file works the same way; a label column in it is refused unless empty,
    since the rows are trained on the teacher's labels alone (no gold label would be used silently).
    """
    path = Path(path)
    if not path.is_file():
        raise AugmentError(f"{path}: transfer set not found")
    texts, rows, methods = [], [], []
    for line_number, record in _records(path, text_column):
        label = record.get("label")
        if label not in (None, ""):
            raise AugmentError(f"{path}:{line_number}: column 'label' holds {label!r}; an unlabelled file must "
                               "leave it empty (or drop the column)")
        text = record.get(text_column)
        if not isinstance(text, str) or not text.strip():
            raise AugmentError(f"{path}:{line_number}: no text in column {text_column!r}")
        texts.append(_normalise(text))
        rows.append(int(record.get("source_row", -1)))
        methods.append(str(record.get("method", "file")))
    if not texts:
        raise AugmentError(f"{path}: the transfer set is empty")
    unique = len(set(texts))
    if unique != len(texts):
        raise AugmentError(f"{path}: {len(texts) - unique} duplicate texts in the transfer set")
    return TransferSet(texts, rows, methods, {"path": str(path), "rows": len(texts)})


def _records(path: Path, text_column: str):
    """(line number, dict) per data row of a JSONL, TSV, CSV or plain-text file."""
    lines = path.read_text(encoding="utf-8").splitlines()
    if path.suffix == ".jsonl":
        for number, line in enumerate(lines, start=1):
            if line.strip():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as error:
                    raise AugmentError(f"{path}:{number}: not JSON ({error.msg})") from None
                if not isinstance(record, dict):
                    raise AugmentError(f"{path}:{number}: expected a JSON object")
                yield number, record
    elif path.suffix in (".tsv", ".csv"):
        delimiter = "\t" if path.suffix == ".tsv" else ","
        reader = csv.DictReader(lines, delimiter=delimiter,
                                quoting=csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL)
        if text_column not in (reader.fieldnames or []):
            raise AugmentError(f"{path}:1: no column {text_column!r} in header {reader.fieldnames}")
        for number, record in enumerate(reader, start=2):
            yield number, record
    else:
        for number, line in enumerate(lines, start=1):
            if line.strip():
                yield number, {text_column: line}
