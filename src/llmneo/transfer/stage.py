"""The `augment` stage: build (or reuse) the run's transfer set from its config.

The sources are pure (`sets`: the unlabelled pool, a user's file; `variants`: synthetic variants); this
module owns what touches models and disk: the teacher tokenizer's mask token, its input-embedding table
for neighbour words, and the run folder's `transfer.jsonl`, reused while its recorded recipe matches.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from llmneo.config import Config
from llmneo.data import LabeledTexts, fingerprint, load_splits
from llmneo.modelfolder import load_tokenizer
from llmneo.modelfolder.sources import resolve_model_source
from llmneo.training.stage import run_splits, start_run_folder
from llmneo.transfer.sets import (
    AugmentError,
    TransferSet,
    join_transfer_sets,
    read_transfer_set,
    unlabelled_pool,
    write_transfer_set,
)
from llmneo.transfer.variants import augment_texts, embedding_neighbours, frequency_vocabulary

__all__ = ["TRANSFER_FILE", "build_transfer_set", "load_transfer_set", "run_augment_stage", "transfer_path"]

TRANSFER_FILE = "transfer.jsonl"


def transfer_path(config: Config) -> Path:
    return config.run_dir / TRANSFER_FILE


def _recipe(config: Config, source: LabeledTexts) -> dict:
    """What the generated set depends on: reuse it only while all of this is unchanged."""
    settings = config.augment.model_dump(exclude={"enabled", "teacher_labels", "file"})
    return {**settings, "source_fingerprint": source.fingerprint(), "teacher": config.teacher.name_or_path}


def _substitute(config: Config, tokenizer, source_texts: list[str]):
    """A word -> substitute function: embedding neighbours or frequency-weighted training words."""
    if config.augment.replace_source == "frequency":
        words, probabilities = frequency_vocabulary(source_texts)
        return lambda word, rng: words[int(rng.choice(len(words), p=probabilities))]
    from transformers import AutoModel

    words, _ = frequency_vocabulary(source_texts)
    single = [(w, ids[0]) for w in words if len(ids := tokenizer.encode(w, add_special_tokens=False)) == 1]
    if len(single) < 2:
        raise AugmentError("replace: fewer than two training words are single tokens of the teacher's vocabulary")
    source = resolve_model_source(config.teacher.name_or_path)
    kwargs = {"gguf_file": config.teacher.gguf_file} if config.teacher.gguf_file else {}
    table = AutoModel.from_pretrained(source, **kwargs).get_input_embeddings().weight.detach().float().numpy()
    neighbours = embedding_neighbours([w for w, _ in single], [i for _, i in single], table, config.augment.neighbours)
    print(f"[augment] embedding neighbours for {len(neighbours):,} single-token training words")

    def substitute(word: str, rng: np.random.Generator) -> str | None:
        options = neighbours.get(word)
        return options[int(rng.integers(len(options)))] if options else None

    return substitute


def _repeats_note(pool: TransferSet) -> str:
    """What an unlabelled pool dropped as repeats, said rather than dropped silently."""
    repeats = pool.meta["duplicates_dropped"]
    return f" ({repeats:,} repeats of a labelled or earlier text kept once)" if repeats else ""


def build_transfer_set(config: Config, source: LabeledTexts) -> TransferSet:
    """The transfer set for `source` (the student's gold training texts), reused while its recipe is unchanged.

    Its parts, each reported by count: the training file's rows with an empty label, the user's own file
    (`augment.file`), the training split's rows left out of the labelled sample (`rest_of_train`), and
    synthetic variants (`methods`). A text already among the gold ones, or in an earlier part, is kept once.
    """
    settings = config.augment
    path = transfer_path(config)
    user_file = read_transfer_set(settings.file, config.data.text_column) if settings.file else None
    pool_source = _full_train(config) if settings.rest_of_train else None
    recipe = _recipe(config, source)
    if pool_source is not None:
        recipe["pool_fingerprint"] = pool_source.fingerprint()
    if source.unlabelled:
        recipe["unlabelled_rows_fingerprint"] = fingerprint(source.unlabelled)
    if user_file is not None:
        recipe["file_fingerprint"] = user_file.fingerprint()
    meta_path = path.with_suffix(path.suffix + ".meta.json")
    if path.is_file() and meta_path.is_file() and json.loads(meta_path.read_text()).get("recipe") == recipe:
        transfer = read_transfer_set(path)
        print(f"[augment] reusing {len(transfer):,} transfer rows from {path}")
        return transfer
    parts = []
    if source.unlabelled:
        parts.append(unlabelled_pool(source.unlabelled, source.texts, method="unlabelled-row"))
        print(f"[augment] {len(parts[-1]):,} rows of {source.source} with an empty label: unlabelled text"
              + _repeats_note(parts[-1]))
    if user_file is not None:
        parts.append(_without_gold(user_file, source))
        repeats = user_file.meta.get("repeats_dropped", 0)
        print(f"[augment] {len(parts[-1]):,} unlabelled texts from {settings.file}"
              + (f" ({repeats:,} repeated rows kept once)" if repeats else ""))
    if pool_source is not None:
        parts.append(unlabelled_pool(pool_source.texts, source.texts))
        print(f"[augment] {len(parts[-1]):,} unlabelled texts: the training split's rows outside the "
              f"{len(source):,} labelled ones (labels withheld)" + _repeats_note(parts[-1]))
    if settings.methods:
        parts.append(_variants(config, source))
    if not parts:
        raise AugmentError("augment.enabled, but there is no unlabelled text: set augment.rest_of_train, "
                           "augment.file or augment.methods, or leave labels empty in the training file")
    transfer = join_transfer_sets(parts, settings.max_rows, settings.seed)
    transfer.meta["recipe"] = recipe
    write_transfer_set(transfer, path)
    capped = transfer.meta["capped_from"]
    print(f"[augment] {len(transfer):,} transfer rows {transfer.meta['per_method']} "
          f"({transfer.meta['duplicates_dropped']:,} repeats dropped"
          + (f"; capped at augment.max_rows={settings.max_rows:,} from {capped:,}" if capped else "")
          + f"), written to {path}")
    return transfer


def _full_train(config: Config) -> LabeledTexts:
    """The whole training split, for `rest_of_train` (only its texts are read from here on)."""
    return load_splits(config.data.model_copy(update={"max_train_samples": None})).train


def _variants(config: Config, source: LabeledTexts) -> TransferSet:
    """Mask / replace / n-gram variants of the gold texts, made with the teacher's tokenizer."""
    settings = config.augment
    tokenizer = load_tokenizer(resolve_model_source(config.teacher.name_or_path), config.teacher.gguf_file)
    substitute = _substitute(config, tokenizer, source.texts) if "replace" in settings.methods else None
    return augment_texts(source.texts, settings.methods, settings.n_per_example, settings.seed,
                         mask_token=tokenizer.mask_token, p_mask=settings.p_mask, p_replace=settings.p_replace,
                         substitute=substitute, ngram_range=(settings.ngram_min, settings.ngram_max),
                         max_rows=settings.max_rows)


def _without_gold(transfer: TransferSet, source: LabeledTexts) -> TransferSet:
    """A user's file may repeat training texts: those rows are gold already, so they are skipped, reported."""
    gold = {" ".join(text.split()) for text in source.texts}
    keep = [i for i, text in enumerate(transfer.texts) if text not in gold]
    if not keep:
        raise AugmentError(f"{transfer.meta.get('path')}: every row repeats a training text; nothing to transfer")
    if len(keep) < len(transfer):
        print(f"[augment] skipped {len(transfer) - len(keep):,} rows of {transfer.meta.get('path')} that repeat "
              "a training text")
    return TransferSet([transfer.texts[i] for i in keep], [transfer.source_rows[i] for i in keep],
                       [transfer.methods[i] for i in keep], {**transfer.meta, "rows": len(keep)})


def load_transfer_set(config: Config, source: LabeledTexts) -> TransferSet | None:
    """The transfer set when `augment.enabled`, else None (and a word when unlabelled rows go unused)."""
    if config.augment.enabled:
        return build_transfer_set(config, source)
    if source.unlabelled:
        print(f"[augment] {len(source.unlabelled):,} training rows have an empty label; set augment.enabled: true "
              "for the teacher to label them (unused now)")
    return None


def run_augment_stage(config: Config) -> TransferSet | None:
    """Build the transfer set (`augment.enabled`), or reuse the one in the run folder."""
    start_run_folder(config)
    if not config.augment.enabled:
        print("[augment] augment.enabled is false: the student trains on the gold set alone")
        return None
    return load_transfer_set(config, run_splits(config).train)
