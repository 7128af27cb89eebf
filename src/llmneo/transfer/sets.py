"""The transfer set: unlabelled texts for the teacher to label, with where each came from.

Real in-domain text without labels (`unlabelled_pool`: the training split's rows left out of the labelled
sample, their labels never read; or a user's own file) is what pays, measured: the setting distillation
exists for. Synthetic variants of the gold texts (`llmneo.transfer.variants`) can join it. A set is
deduplicated, capped at `max_rows` (a reported cut, never a silent one), and written atomically as JSONL
with a meta file. No label column is ever written, and a user's file with a non-empty one is refused.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from llmneo.atomic import atomic_path, write_text_atomic
from llmneo.data import fingerprint
from llmneo.data.files import RowProblem, columns_of, lookup, read_records

__all__ = [
    "AugmentError",
    "TransferSet",
    "join_transfer_sets",
    "normalise",
    "read_transfer_set",
    "unlabelled_pool",
    "write_transfer_set",
]


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
        return fingerprint(self.texts)


def normalise(text: str) -> str:
    return " ".join(text.split())


def unlabelled_pool(texts: Sequence[str], labelled: Sequence[str], method: str = "pool") -> TransferSet:
    """The `texts` not among the `labelled` ones, deduplicated, as transfer rows (method ``pool`` by default).

    `source_rows[i]` indexes `texts`; only texts are taken, so no label can leak into the set.
    """
    seen = {normalise(text) for text in labelled}
    kept: dict[str, int] = {}
    for row, text in enumerate(texts):
        text = normalise(text)
        if text and text not in seen and text not in kept:
            kept[text] = row
    if not kept:
        raise AugmentError(f"the unlabelled pool is empty: all {len(texts)} texts are labelled ones or repeats")
    meta = {"pool_texts": len(texts), "labelled_texts": len(labelled), "kept": len(kept),
            "duplicates_dropped": len(texts) - len(labelled) - len(kept)}
    return TransferSet(list(kept), list(kept.values()), [method] * len(kept), meta)


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
    """Read a transfer set written by `write_transfer_set`, or a user's file of texts (JSONL, TSV, CSV, Parquet or
    plain text; the text in `text_column`, else `sentence` or `text`).

    A label column in a user's file is refused unless empty: its rows are trained on the teacher's labels
    alone, so a gold label would be ignored silently. Repeated texts are kept once, and counted.
    """
    path = Path(path)
    if not path.is_file():
        raise AugmentError(f"{path}: transfer set not found")
    column = text_column if text_column in (columns_of(path) or [text_column]) else None
    texts: dict[str, tuple[int, str]] = {}
    repeats = blank = 0
    for line_number, record in read_records(path):
        if isinstance(record, RowProblem) and record.reason == "empty line":
            blank += 1  # a separator, not a text: nothing is lost
            continue
        if isinstance(record, RowProblem):
            raise AugmentError(f"{path}:{line_number}: {record.reason}")
        label = record.get("label")
        if label not in (None, ""):
            raise AugmentError(f"{path}:{line_number}: column 'label' holds {label!r}; an unlabelled file must "
                               "leave it empty (or drop the column)")
        text = lookup(record, column or _text_column(path))
        if not isinstance(text, str) or not text.strip():
            raise AugmentError(f"{path}:{line_number}: no text in column {column or _text_column(path)!r}")
        text = normalise(text)
        if text in texts:
            repeats += 1
            continue
        texts[text] = (int(record.get("source_row", -1)), str(record.get("method", "file")))
    if not texts:
        raise AugmentError(f"{path}: the transfer set is empty")
    return TransferSet(list(texts), [row for row, _ in texts.values()], [method for _, method in texts.values()],
                       {"path": str(path), "rows": len(texts), "repeats_dropped": repeats, "blank_lines": blank})


def _text_column(path: Path) -> str:
    columns = columns_of(path)
    for name in ("sentence", "text"):
        if name in columns:
            return name
    if len(columns) == 1:
        return columns[0]
    raise AugmentError(f"{path}: which column holds the text? It has {columns}; set data.text_column")
