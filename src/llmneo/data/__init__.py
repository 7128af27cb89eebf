"""The data a run reads: labelled texts from files, a GLUE folder or the hub (``labeled``)."""

from llmneo.data.labeled import (
    BadRow,
    DataError,
    DataSplits,
    LabeledTexts,
    describe_bad_rows,
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
    "load_splits",
    "read_labeled_file",
    "read_labeled_head",
    "stratified_subsample",
]
