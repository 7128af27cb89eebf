"""Data reading: every kind of bad row is stopped with file and line, or skipped and reported."""

import json

import pandas as pd
import pytest

from llmneo.config import DataConfig
from llmneo.data import DataError, describe_bad_rows, load_splits, read_labeled_file, stratified_subsample

LABELS = ["negative", "positive"]


def write_tsv(path, body: bytes):
    path.write_bytes(b"sentence\tlabel\n" + body)
    return path


@pytest.mark.parametrize("row, reason", [
    (b"a fine film\t\n", "missing label"),
    (b"a fine film\t2\n", "not in 0..1"),
    (b"a fine film\tmaybe\n", "neither an integer"),
    (b"   \t1\n", "empty text"),
    (b"a fine film\t1\textra\n", "3 columns, expected 2"),
    (b"caf\xe9 au lait\t1\n", "undecodable"),
])
def test_each_bad_row_names_file_and_line(tmp_path, row, reason):
    path = write_tsv(tmp_path / "train.tsv", b"good one\t1\n" + row + b"another\t0\n")
    with pytest.raises(DataError, match=rf"train.tsv:3: .*{reason}"):
        read_labeled_file(path, LABELS)
    kept = read_labeled_file(path, LABELS, skip_bad_rows=True)
    assert kept.texts == ["good one", "another"] and kept.labels == [1, 0] and kept.lines == [2, 4]
    assert [row.line for row in kept.bad_rows] == [3]
    assert "skipped 1 bad rows at lines 3" in describe_bad_rows(kept)


def test_sst2_dev_reads_whole(sst2_dir):
    dev = read_labeled_file(sst2_dir / "dev.tsv", LABELS)
    assert len(dev) == 872 and sum(dev.labels) == 444
    assert all(text == text.strip() for text in dev.texts)


def test_csv_jsonl_parquet_with_custom_columns_and_label_names(tmp_path):
    rows = [{"review": "great, really", "stars": "positive"}, {"review": "dull", "stars": 0}]
    (tmp_path / "d.csv").write_text('review,stars\n"great, really",positive\ndull,0\n')
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    pd.DataFrame({"review": ["great, really", "dull"], "stars": [1, 0]}).to_parquet(tmp_path / "d.parquet")
    for name in ("d.csv", "d.jsonl", "d.parquet"):
        data = read_labeled_file(tmp_path / name, LABELS, text_column="review", label_column="stars")
        assert data.texts == ["great, really", "dull"] and data.labels == [1, 0], name


def test_bad_jsonl_and_missing_column(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"sentence": "ok", "label": 1}\n{not json\n')
    with pytest.raises(DataError, match=r"d.jsonl:2: invalid JSON"):
        read_labeled_file(tmp_path / "d.jsonl", LABELS)
    (tmp_path / "d.csv").write_text("text,label\nok,1\n")
    with pytest.raises(DataError, match=r"d.csv:1: no column 'sentence'"):
        read_labeled_file(tmp_path / "d.csv", LABELS)


def test_three_classes(tmp_path):
    path = write_tsv(tmp_path / "d.tsv", b"a\t0\nb\t1\nc\t2\n")
    assert read_labeled_file(path, ["neg", "neutral", "pos"]).labels == [0, 1, 2]
    with pytest.raises(DataError, match="not in 0..1"):
        read_labeled_file(path, LABELS)


def test_stratified_seeded_subsample(sst2_dir):
    train = read_labeled_file(sst2_dir / "dev.tsv", LABELS)
    first = stratified_subsample(train, 200, seed=7)
    again = stratified_subsample(train, 200, seed=7)
    other = stratified_subsample(train, 200, seed=8)
    assert first.texts == again.texts and first.texts != other.texts
    assert len(first) == 200 and abs(sum(first.labels) / 200 - 444 / 872) < 0.01


def test_load_splits_from_env_folder(sst2_dir, monkeypatch):
    monkeypatch.setenv("LLMNEO_DATA_DIR", str(sst2_dir))
    splits = load_splits(DataConfig(max_train_samples=100, max_eval_samples=50))
    assert len(splits.train) == 100 and len(splits.dev) == 50
