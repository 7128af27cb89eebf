"""Vocabulary pruning of a run's student: its token table cut to the pieces its training and unlabelled texts
use, checked on dev against the unpruned student.

    python benchmarks/prune_vocab.py outputs/full-cpu --out benchmarks/full-cpu-vocab.md

Writes the pruned folder beside the student (`student-pruned-vocab/`) and one table: rows kept, parameters
before and after, dev texts that needed a dropped piece, the largest logit difference on the others, and
the share of dev labels unchanged.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from llmneo.config import load_config
from llmneo.data import load_splits, read_texts
from llmneo.inference.vocab import prune_vocabulary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    config = load_config(args.run / "config.yaml")
    splits = load_splits(config.data.model_copy(update={"max_train_samples": None}))
    texts = list(splits.train.texts)
    transfer = args.run / "transfer.jsonl"
    if transfer.is_file():
        texts += [text for _, text in read_texts(transfer)]
    report = prune_vocabulary(args.run / "student", texts, args.run / "student-pruned-vocab", splits.dev.texts)
    table = ("| rows kept | of | parameters before | after | dev texts | needing a dropped piece | largest logit "
             "difference (the others) | dev labels unchanged |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n"
             f"| {report.kept:,} | {report.of:,} | {report.parameters_before / 1e6:.1f}M | "
             f"{report.parameters_after / 1e6:.1f}M | {report.check_texts} | {report.texts_with_a_dropped_token} | "
             f"{report.largest_logit_difference:.2e} | {report.identical_predictions:.4f} |\n")
    args.out.write_text(f"`python benchmarks/prune_vocab.py {args.run} --out {args.out}`\n\n" + table)
    print(table)


if __name__ == "__main__":
    main()
