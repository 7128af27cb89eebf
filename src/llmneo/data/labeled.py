"""Labelled texts from a GLUE folder, TSV/CSV/JSONL/Parquet files, or the Hugging Face hub.

Every row is checked; a bad one stops the run with its file and line, or, with `skip_bad_rows`,
is dropped and reported by line. Nothing is dropped silently. Sub-sampling is seeded and
stratified so that a small demo keeps the class balance of the full data.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from llmneo.config import DataConfig
from llmneo.data.errors import DataError
from llmneo.data.files import RowProblem, columns_of, file_format, lookup, read_records

__all__ = [
    "BadRow",
    "DataError",
    "DataSplits",
    "LabeledTexts",
    "describe_bad_rows",
    "fingerprint",
    "load_splits",
    "read_labeled_file",
    "read_labeled_head",
    "stratified_subsample",
]


def fingerprint(texts: Sequence[str], labels: Sequence[int] | None = None) -> str:
    """A short content hash of texts (and their labels): what cache keys and reuse checks compare.

    The one owner of this hash: a labelled set hashes `label<TAB>text` lines, an unlabelled one `text`
    lines, so the digests of existing caches stay valid."""
    digest = hashlib.sha256()
    if labels is None:
        for text in texts:
            digest.update(f"{text}\n".encode())
    else:
        for text, label in zip(texts, labels):
            digest.update(f"{label}\t{text}\n".encode())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class BadRow:
    line: int
    reason: str


@dataclass
class LabeledTexts:
    texts: list[str]
    labels: list[int]
    source: str
    lines: list[int] = field(default_factory=list)  # where each row came from, for error messages
    bad_rows: list[BadRow] = field(default_factory=list)
    dropped_for_validation: int = 0  # rows left out because a validation row contains them (data.validation)
    unlabelled: list[str] = field(default_factory=list)  # rows with an empty label: text for the transfer set

    def __len__(self) -> int:
        return len(self.texts)

    def fingerprint(self) -> str:
        """Content hash of texts and labels: the cache key's view of the data."""
        return fingerprint(self.texts, self.labels)

    def subset(self, indices: Sequence[int] | np.ndarray) -> LabeledTexts:
        return LabeledTexts([self.texts[i] for i in indices], [self.labels[i] for i in indices], self.source,
                            [self.lines[i] for i in indices] if self.lines else [], self.bad_rows,
                            self.dropped_for_validation, self.unlabelled)


@dataclass
class DataSplits:
    train: LabeledTexts
    dev: LabeledTexts
    validation: LabeledTexts | None = None  # carved from train (`data.validation_size`): picks checkpoints

    @property
    def selection(self) -> LabeledTexts:
        """What checkpoints and early decisions are judged on: validation when carved, else dev."""
        return self.validation if self.validation is not None else self.dev


def _parse_label(raw: object, label_names: list[str]) -> int:
    """An integer id or a label name; raises ValueError naming what is wrong."""
    if _is_missing(raw):
        raise ValueError("missing label")
    if isinstance(raw, str) and raw.strip() in label_names:
        return label_names.index(raw.strip())
    try:
        as_float = float(raw)  # "1", 1, 1.0 are all label 1
    except (TypeError, ValueError):
        raise ValueError(f"label {raw!r} is neither an integer nor one of {label_names}") from None
    if not as_float.is_integer() or not 0 <= as_float < len(label_names):
        raise ValueError(f"label {raw!r} is not in 0..{len(label_names) - 1}")
    return int(as_float)


def _is_missing(raw: object) -> bool:
    return raw is None or (isinstance(raw, str) and raw.strip() == "") or (isinstance(raw, float) and np.isnan(raw))


def _check_columns(path: Path, text_column: str, label_column: str) -> None:
    """A table without the named columns is refused at once, naming what it has (JSONL rows are checked one
    by one: their keys may differ)."""
    if file_format(path) in ("tsv", "csv", "parquet"):
        columns = columns_of(path, sample=1) if file_format(path) == "parquet" else _header(path)
        for name in (text_column, label_column):
            if name not in columns:
                raise DataError(f"{path}:1: no column {name!r} in {columns}")


def _header(path: Path) -> list[str]:
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as handle:
        first = handle.readline().rstrip("\r\n")
    return first.split("\t") if file_format(path) == "tsv" else next(csv.reader([first]), [])


def read_labeled_file(path: str | Path, labels: list[str], text_column: str = "sentence",
                      label_column: str = "label", skip_bad_rows: bool = False,
                      unlabelled_ok: bool = False) -> LabeledTexts:
    """Read and check every row; bad rows raise DataError, or are kept aside when `skip_bad_rows`.

    `unlabelled_ok` (a training file): a row whose label is empty is unlabelled text, kept in `unlabelled`
    for the transfer set, not an error."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    _check_columns(path, text_column, label_column)
    result = LabeledTexts([], [], str(path))
    for number, record in read_records(path):
        problem = record.reason if isinstance(record, RowProblem) else None
        if problem is None:
            text, raw_label = lookup(record, text_column), lookup(record, label_column)
            if not isinstance(text, str) or not text.strip():
                problem = "empty text" if isinstance(text, str) or text is None else f"text {text!r} is not a string"
            elif unlabelled_ok and _is_missing(raw_label):
                result.unlabelled.append(text.strip())
                continue
            else:
                try:
                    label = _parse_label(raw_label, labels)
                except ValueError as error:
                    problem = str(error)
        if problem is not None:
            if not skip_bad_rows:
                raise DataError(f"{path}:{number}: {problem} (use --skip-bad-rows to drop such rows)")
            result.bad_rows.append(BadRow(number, problem))
            continue
        result.texts.append(text.strip())
        result.labels.append(label)
        result.lines.append(number)
    if not result.texts:
        raise DataError(f"{path}: no usable rows")
    return result


def stratified_subsample(data: LabeledTexts, max_samples: int | None, seed: int) -> LabeledTexts:
    """A seeded subset with the class proportions of the whole (scikit-learn's stratified split)."""
    if max_samples is None or max_samples >= len(data):
        return data
    from sklearn.model_selection import train_test_split

    indices = np.arange(len(data))
    counts = np.bincount(data.labels)
    stratify = data.labels if counts[counts > 0].min() >= 2 and max_samples >= len(counts) else None
    chosen, _ = train_test_split(indices, train_size=max_samples, random_state=seed, stratify=stratify)
    return data.subset(np.sort(chosen))


def _from_hub(cfg: DataConfig) -> DataSplits:
    from datasets import load_dataset

    dataset = load_dataset(cfg.hub_name, cfg.hub_config)

    def convert(split: str) -> LabeledTexts:
        rows = dataset[split]
        texts, labels = list(rows[cfg.text_column]), list(rows[cfg.label_column])
        bad = [i for i, label in enumerate(labels) if not 0 <= label < len(cfg.labels)]
        if bad:  # e.g. GLUE test splits carry label -1
            raise DataError(f"hub {cfg.hub_name}/{cfg.hub_config} split {split}: {len(bad)} rows without a valid label")
        return LabeledTexts([t.strip() for t in texts], labels, f"hub:{cfg.hub_name}/{split}",
                            list(range(1, len(texts) + 1)))

    return DataSplits(convert("train"), convert(cfg.hub_eval_split))


def load_splits(cfg: DataConfig, max_train_samples: int | None = None) -> DataSplits:
    """Train and dev as the config says, sub-sampled; `max_train_samples` overrides the config's."""
    if cfg.source == "hub":
        splits = _from_hub(cfg)
    else:
        if cfg.source == "glue_dir":
            train_path, dev_path = Path(cfg.glue_dir) / "train.tsv", Path(cfg.glue_dir) / "dev.tsv"
        else:
            train_path, dev_path = cfg.train_file, cfg.eval_file
        def read(path, unlabelled_ok: bool) -> LabeledTexts:
            if not path:
                return LabeledTexts([], [], "none")
            return read_labeled_file(path, cfg.labels, cfg.text_column, cfg.label_column, cfg.skip_bad_rows,
                                     unlabelled_ok)

        splits = DataSplits(read(train_path, True), read(dev_path, False))
        if cfg.dev_size:
            splits = _hold_out_dev(splits.train, cfg.dev_size, cfg.seed)
    validation = None
    if cfg.validation_size:
        from llmneo.data.validation import carve_validation

        cut = carve_validation(splits.train, cfg.validation_size, cfg.seed)
        splits.train, validation = cut.train, cut.validation
        cut.train.dropped_for_validation = cut.dropped_contained
    train_limit = max_train_samples or cfg.max_train_samples
    return DataSplits(stratified_subsample(splits.train, train_limit, cfg.seed),
                      stratified_subsample(splits.dev, cfg.max_eval_samples, cfg.seed), validation)


def _hold_out_dev(train: LabeledTexts, size: int, seed: int) -> DataSplits:
    """`size` labelled rows, seeded and stratified, as dev; the rest (and every unlabelled row) as train."""
    if size >= len(train):
        raise DataError(f"data.dev_size: {size:,} dev rows asked, but {train.source} has {len(train):,} labelled rows")
    dev = stratified_subsample(train, size, seed)
    dev.unlabelled = []  # the training file's unlabelled rows belong to training
    chosen = set(dev.lines)
    rest = train.subset([i for i, line in enumerate(train.lines) if line not in chosen])
    dev.source = f"{train.source} (dev: {size:,} rows held out)"
    return DataSplits(rest, dev)


def describe_bad_rows(data: LabeledTexts, shown: int = 10) -> str | None:
    """One line on what `skip_bad_rows` dropped, so the user sees it; None when nothing was."""
    if not data.bad_rows:
        return None
    listed = ", ".join(f"{row.line} ({row.reason})" for row in data.bad_rows[:shown])
    more = f" and {len(data.bad_rows) - shown} more" if len(data.bad_rows) > shown else ""
    return f"{data.source}: skipped {len(data.bad_rows)} bad rows at lines {listed}{more}"


def read_labeled_head(path: str | Path, labels: list[str], max_examples: int | None = None) -> LabeledTexts:
    """A labelled file's first `max_examples` rows (all of them when None): the dev slice that
    export checks agreement on and bench measures on."""
    data = read_labeled_file(path, labels)
    count = min(len(data), max_examples) if max_examples else len(data)
    return data.subset(range(count))
