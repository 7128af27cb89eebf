"""What a data file holds, read once for `llmneo init`: its text and label columns, the label names, how
many rows are labelled and unlabelled, and the texts (for their lengths).

Columns are detected when not given, and the choice is said: a text column is one named like one (text,
sentence, review, ...) or else the string column with the longest texts; a label column one named like one
(label, class, category, ...) or else a column with few distinct values. A row with an empty label is
unlabelled text. A file that cannot make a classifier is refused in one line: no text column, one class,
or labels that are neither ids nor names (a number per row, as a regression target would be).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmneo.data.errors import DataError
from llmneo.data.files import RowProblem, columns_of, lookup, read_records

__all__ = ["DataProfile", "profile_file"]

_TEXT_NAMES = ("text", "sentence", "review", "question", "content", "body", "message", "document", "utterance")
_LABEL_NAMES = ("label", "labels", "class", "category", "intent", "target", "sentiment", "topic", "y")
MAX_CLASSES = 100


@dataclass
class DataProfile:
    path: Path
    text_column: str
    label_column: str
    labels: list[str]  # class names in id order: the ids themselves ("0", "1", ...) when the file holds ids
    class_counts: dict[str, int]
    texts: list[str]  # every text, labelled or not
    unlabelled: int
    notes: list[str] = field(default_factory=list)  # what was detected, said to the user

    @property
    def labelled(self) -> int:
        return sum(self.class_counts.values())


def _records(path: Path) -> list[tuple[int, dict[str, Any]]]:
    rows = []
    for line, record in read_records(path):
        if isinstance(record, RowProblem):
            if record.reason == "empty line":
                continue
            raise DataError(f"{path}:{line}: {record.reason}")
        rows.append((line, record))
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows


def _pick_text(path: Path, rows: list[tuple[int, dict[str, Any]]], columns: list[str]) -> tuple[str, str]:
    for name in columns:
        if name.rsplit(".", 1)[-1].lower() in _TEXT_NAMES:
            return name, f"text column {name!r} (by its name)"
    lengths = {name: sum(len(v) for _, r in rows if isinstance(v := lookup(r, name), str)) / len(rows)
               for name in columns}
    textual = {name: length for name, length in lengths.items()
               if all(isinstance(lookup(r, name), str) for _, r in rows[:200]) and length > 0}
    if not textual:
        raise DataError(f"{path}: no column holds text (columns: {columns}); name it with --text-column")
    name = max(textual, key=textual.get)
    return name, f"text column {name!r} (the longest texts, {textual[name]:.0f} characters on average)"


def _pick_label(path: Path, rows: list[tuple[int, dict[str, Any]]], columns: list[str], text: str) -> tuple[str, str]:
    candidates = [name for name in columns if name != text]
    for name in candidates:
        if name.rsplit(".", 1)[-1].lower() in _LABEL_NAMES:
            return name, f"label column {name!r} (by its name)"
    distinct = {name: len({str(lookup(r, name)) for _, r in rows}) for name in candidates}
    few = {name: count for name, count in distinct.items() if 2 <= count <= min(MAX_CLASSES, len(rows) // 2)}
    if not few:
        raise DataError(f"{path}: no column looks like a label (columns: {columns}); name it with --label-column")
    name = min(few, key=few.get)
    return name, f"label column {name!r} ({few[name]} distinct values)"


def _is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or (
        isinstance(value, float) and math.isnan(value))


def _label_names(path: Path, column: str, values: list[Any]) -> tuple[list[str], str]:
    """The class names: ids 0..K-1 stay ids (named "0".."K-1"); anything else is a name, sorted."""
    shown = [str(v).strip() for v in values]
    if all(_integral(v) for v in values):
        ids = sorted({int(float(v)) for v in values})
        if ids == list(range(len(ids))):
            return [str(i) for i in ids], f"labels are ids 0..{len(ids) - 1}: name them in data.labels"
    if all(_number(v) for v in values) and len(set(shown)) > min(MAX_CLASSES, len(values) // 2):
        raise DataError(f"{path}: column {column!r} holds {len(set(shown)):,} different numbers: a label must be a "
                        "class id or a class name, not a measurement")
    names = sorted(set(shown))
    if len(names) > MAX_CLASSES:
        raise DataError(f"{path}: column {column!r} holds {len(names):,} different labels (at most {MAX_CLASSES}): "
                        "is it the right column? name it with --label-column")
    return names, f"{len(names)} label names: {', '.join(names[:8])}{' ...' if len(names) > 8 else ''}"


def _integral(value: Any) -> bool:
    return _number(value) and float(value).is_integer()


def _number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return not isinstance(value, bool)


def profile_file(path: str | Path, text_column: str | None = None, label_column: str | None = None) -> DataProfile:
    """Read `path` once and describe it; a DataError in one line when it cannot make a classifier."""
    path = Path(path)
    rows = _records(path)
    columns = columns_of(path)
    notes = []
    for given, flag in ((text_column, "--text-column"), (label_column, "--label-column")):
        if given is not None and given not in columns and all(lookup(r, given) is None for _, r in rows[:50]):
            raise DataError(f"{path}: {flag} {given!r}: no such column (columns: {columns})")
    if text_column is None:
        text_column, said = _pick_text(path, rows, columns)
        notes.append(said)
    if label_column is None:
        label_column, said = _pick_label(path, rows, columns, text_column)
        notes.append(said)
    texts, labelled_values, unlabelled = [], [], 0
    for line, record in rows:
        text = lookup(record, text_column)
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{path}:{line}: empty text in column {text_column!r}")
        texts.append(text.strip())
        value = lookup(record, label_column)
        if _is_empty(value):
            unlabelled += 1
        else:
            labelled_values.append(value)
    if not labelled_values:
        raise DataError(f"{path}: column {label_column!r} is empty on every row: nothing to learn the classes from")
    labels, said = _label_names(path, label_column, labelled_values)
    notes.append(said)
    counts = Counter(str(int(float(v))) if labels[0] == "0" and _integral(v) else str(v).strip()
                     for v in labelled_values)
    if len(counts) < 2:
        raise DataError(f"{path}: one class ({next(iter(counts))!r}) in column {label_column!r}: a classifier needs "
                        "two or more")
    return DataProfile(path, text_column, label_column, labels, {name: counts.get(name, 0) for name in labels},
                       texts, unlabelled, notes)
