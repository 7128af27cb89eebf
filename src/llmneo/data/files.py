"""Rows from data files as users have them: TSV, CSV, JSONL, Parquet or plain text, one reader for all.

Every reader yields `(line, record)`: the line a row starts on (so an error can name it) and a dict of
its columns. CSV is read with the csv module over the whole file, so quoted fields may hold commas, tabs
and newlines; a UTF-8 byte-order mark and CRLF line ends are accepted everywhere. JSONL columns may be
nested and are named with dots (`meta.text`). Bytes that are not UTF-8 make a row, not the file, bad.
Labelled texts (`labeled`), unlabelled texts (`read_texts`) and `llmneo init` all read through here.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from llmneo.data.errors import DataError

__all__ = ["FORMATS", "RowProblem", "columns_of", "file_format", "lookup", "read_records", "read_texts"]

FORMATS = {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet",
           ".pq": "parquet", ".txt": "text"}


class RowProblem(dict):
    """A record that could not be read; `reason` says why (the row's line is yielded beside it)."""

    @property
    def reason(self) -> str:
        return self["__problem__"]


def file_format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"{path}: unknown file type {path.suffix!r} (expected .tsv, .csv, .jsonl, .parquet or .txt)")
    return fmt


def lookup(record: dict[str, Any], column: str) -> Any:
    """A column of a record, nested columns named with dots (`meta.text`); None when absent."""
    if column in record:
        return record[column]
    value: Any = record
    for part in column.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _decoded(path: Path) -> Iterator[tuple[int, str | None]]:
    """(line number, text without its line end) per physical line; None where the bytes are not UTF-8."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                yield number, raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                yield number, None


def _delimited(path: Path, delimiter: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Rows of a TSV or CSV file with a header. TSV is read line by line without quoting (GLUE's files hold
    bare quote characters); CSV through the csv module, so a quoted field may span lines."""
    if delimiter == "\t":
        lines = _decoded(path)
        header_line, header = next(lines, (1, None))
        if header is None:
            raise DataError(f"{path}:{header_line}: missing or undecodable header")
        columns = header.split("\t")
        for number, line in lines:
            if line is None:
                yield number, RowProblem(__problem__="undecodable bytes (not UTF-8)")
            elif not line.strip():
                yield number, RowProblem(__problem__="empty line")
            elif len(fields := line.split("\t")) != len(columns):
                yield number, RowProblem(__problem__=f"{len(fields)} columns, expected {len(columns)}")
            else:
                yield number, dict(zip(columns, fields))
        return
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 (byte at offset {error.start}); save it as UTF-8") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    columns = next(reader, None)
    if not columns:
        raise DataError(f"{path}:1: missing header")
    line = reader.line_num + 1
    for fields in reader:
        start, line = line, reader.line_num + 1
        if not fields or all(not field.strip() for field in fields):
            yield start, RowProblem(__problem__="empty line")
        elif len(fields) != len(columns):
            yield start, RowProblem(__problem__=f"{len(fields)} columns, expected {len(columns)}")
        else:
            yield start, dict(zip(columns, fields))


def _jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, line in _decoded(path):
        if line is None:
            yield number, RowProblem(__problem__="undecodable bytes (not UTF-8)")
            continue
        if not line.strip():
            continue  # blank lines separate nothing in JSONL; they are not rows
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            yield number, RowProblem(__problem__=f"invalid JSON ({error.msg})")
            continue
        yield number, record if isinstance(record, dict) else RowProblem(__problem__="not a JSON object")


def _parquet(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    import pandas as pd

    frame = pd.read_parquet(path)
    yield from enumerate(frame.to_dict("records"), start=1)


def _text(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, line in _decoded(path):
        if line is None:
            yield number, RowProblem(__problem__="undecodable bytes (not UTF-8)")
        elif not line.strip():
            yield number, RowProblem(__problem__="empty line")
        else:
            yield number, {"text": line}


def read_records(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line, record) per row; a `RowProblem` record for a row that cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    fmt = file_format(path)
    readers = {"tsv": lambda: _delimited(path, "\t"), "csv": lambda: _delimited(path, ","), "jsonl": lambda: _jsonl(path),
               "parquet": lambda: _parquet(path), "text": lambda: _text(path)}
    return readers[fmt]()


def columns_of(path: str | Path, sample: int = 200) -> list[str]:
    """The column names of a file (JSONL: the dotted leaf keys seen in its first `sample` rows)."""
    names: dict[str, None] = {}
    for count, (_, record) in enumerate(read_records(path)):
        if count >= sample:
            break
        if not isinstance(record, RowProblem):
            names |= dict.fromkeys(_leaf_keys(record))
    return list(names)


def _leaf_keys(record: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in record.items():
        if isinstance(value, dict):
            keys += _leaf_keys(value, f"{prefix}{key}.")
        else:
            keys.append(f"{prefix}{key}")
    return keys


def read_texts(path: str | Path, text_column: str | None = None) -> list[tuple[int, str]]:
    """(line, text) for every row of a file of texts: a plain-text file (one per line) or a table with a
    text column (`text_column`, else `sentence` or `text`). An empty text or unreadable row stops with its
    file and line: a text is never dropped silently."""
    path = Path(path)
    column = text_column or _default_text_column(path)
    texts = []
    for line, record in read_records(path):
        if isinstance(record, RowProblem):
            raise DataError(f"{path}:{line}: {record.reason}")
        text = lookup(record, column)
        if not isinstance(text, str):
            raise DataError(f"{path}:{line}: no text in column {column!r}")
        if not text.strip():
            raise DataError(f"{path}:{line}: empty or whitespace-only text")
        texts.append((line, text))
    if not texts:
        raise DataError(f"{path}: no texts")
    return texts


def _default_text_column(path: Path) -> str:
    if file_format(path) == "text":
        return "text"
    columns = columns_of(path)
    for name in ("sentence", "text"):
        if name in columns:
            return name
    if len(columns) == 1:
        return columns[0]
    raise DataError(f"{path}: which column holds the text? It has {columns}; name one with --text-column")
