"""Files as users have them (issue 25): quoted CSV fields holding commas, tabs and newlines, a byte-order mark,
CRLF line ends, nested JSONL, Parquet; a bad row is named by the file and the line it starts on; rows with
an empty label are unlabelled text, kept for the transfer set and never dropped."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from llmneo.data import DataError, read_labeled_file
from llmneo.data.files import columns_of, read_records, read_texts

CLASSES = ["billing", "bug", "praise"]


def test_quoted_csv_fields_keep_commas_tabs_quotes_and_newlines(tmp_path):
    path = tmp_path / "tickets.csv"
    path.write_text('text,label\n"charged twice, then again",billing\n"crash\ton save\nand again",bug\n'
                    '"she said ""wow""",praise\n', encoding="utf-8")
    data = read_labeled_file(path, CLASSES, text_column="text")
    assert data.texts == ["charged twice, then again", "crash\ton save\nand again", 'she said "wow"']
    assert data.labels == [0, 1, 2] and data.lines == [2, 3, 5]  # a row's line is where it starts


def test_a_byte_order_mark_and_crlf_line_ends_read_as_plain_utf8(tmp_path):
    for suffix, body in ((".csv", "text,label\r\ncafé crème,praise\r\n\"two\r\nlines\",bug\r\n"),
                         (".tsv", "text\tlabel\r\ncafé crème\tpraise\r\ntwo lines\tbug\r\n")):
        path = tmp_path / f"bom{suffix}"
        path.write_bytes(b"\xef\xbb\xbf" + body.encode("utf-8"))
        assert columns_of(path) == ["text", "label"], suffix  # no "\ufefftext" column
        data = read_labeled_file(path, CLASSES, text_column="text")
        assert data.texts[0] == "café crème" and not any("\r" in t.replace("\r\n", "") for t in data.texts)
        assert data.labels == [2, 1], suffix


def test_nested_jsonl_columns_are_named_with_dots(tmp_path):
    rows = [{"id": 1, "body": {"text": "refund please"}, "meta": {"label": "billing"}},
            {"id": 2, "body": {"text": "love it"}, "meta": {"label": "praise"}}]
    path = tmp_path / "nested.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")  # a trailing blank line is no row
    assert columns_of(path) == ["id", "body.text", "meta.label"]
    data = read_labeled_file(path, CLASSES, text_column="body.text", label_column="meta.label")
    assert data.texts == ["refund please", "love it"] and data.labels == [0, 2]


def test_parquet_with_string_labels_and_missing_ones_as_unlabelled(tmp_path):
    path = tmp_path / "t.parquet"
    pd.DataFrame({"text": ["refund", "broken", "no label here"], "label": ["billing", "bug", None]}).to_parquet(path)
    data = read_labeled_file(path, CLASSES, text_column="text", unlabelled_ok=True)
    assert data.texts == ["refund", "broken"] and data.unlabelled == ["no label here"]
    with pytest.raises(DataError, match=r"t.parquet:3: missing label"):
        read_labeled_file(path, CLASSES, text_column="text")  # an eval file has no unlabelled rows


@pytest.mark.parametrize("body, line, reason", [
    ('text,label\nok,bug\n"two\nlines",bug\n"bad, row",nope\n', 5, "'nope'"),
    ('text,label\nok,bug\n"x",bug,extra\n', 3, "3 columns, expected 2"),
    ('text,label\nok,bug\n ,bug\n', 3, "empty text"),
])
def test_a_bad_csv_row_names_the_file_and_the_line_it_starts_on(tmp_path, body, line, reason):
    path = tmp_path / "bad.csv"
    path.write_text(body)
    with pytest.raises(DataError, match=rf"bad.csv:{line}: .*{reason}"):
        read_labeled_file(path, CLASSES, text_column="text")


def test_a_csv_that_is_not_utf8_is_refused_whole_with_the_offset(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("text,label\ncafé,bug\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin.csv: not UTF-8 \(byte at offset 14\)"):
        list(read_records(path))


def test_texts_for_predict_or_augment_name_the_line_of_an_empty_one(tmp_path):
    path = tmp_path / "texts.txt"
    path.write_text("first\nsecond\n   \nfourth\n")
    with pytest.raises(DataError, match=r"texts.txt:3: empty line"):
        read_texts(path)
    path.write_text("first\nsecond\n")
    assert read_texts(path) == [(1, "first"), (2, "second")]
    table = tmp_path / "texts.csv"
    table.write_text('id,review\n1,"good, really"\n')
    with pytest.raises(DataError, match=r"which column holds the text\? It has \['id', 'review'\]"):
        read_texts(table)  # two columns: asked, not guessed
    assert read_texts(table, "review") == [(2, "good, really")]
