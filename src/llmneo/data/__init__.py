"""The data a run reads: labelled texts from files, a GLUE folder or the hub (``labeled``), and the
validation split carved from training (``validation``)."""

from llmneo.data.errors import DataError
from llmneo.data.files import read_texts
from llmneo.data.labeled import (
    BadRow,
    DataSplits,
    LabeledTexts,
    describe_bad_rows,
    fingerprint,
    load_splits,
    read_labeled_file,
    read_labeled_head,
    stratified_subsample,
)

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
    "read_texts",
    "stratified_subsample",
]
