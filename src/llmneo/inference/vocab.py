"""Prune a model folder's vocabulary to the tokens some texts use: a smaller token table, the same model.

A student cut from MPNet-base keeps the teacher's 30,527-row token table: 23.4M of the 4-layer cut's 38.6M
parameters, most of them rows no training text ever reads. This keeps the rows the given texts (training and
unlabelled) tokenise to, plus every special token, and renumbers them. For a WordPiece tokenizer a text whose
tokens were all kept tokenises exactly as before (the greedy longest match finds the same pieces), so its
logits are unchanged; a text that needed a dropped piece now tokenises differently. `prune_vocabulary` says
how many of the check texts (dev) that is, and how far their logits moved.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from llmneo.modelfolder import read_model_meta, write_model_meta

__all__ = ["VocabularyReport", "prune_vocabulary"]


@dataclass
class VocabularyReport:
    folder: Path
    kept: int
    of: int
    parameters_before: int
    parameters_after: int
    check_texts: int
    texts_with_a_dropped_token: int
    largest_logit_difference: float  # over the check texts whose tokens were all kept
    identical_predictions: float  # share of all check texts whose label is unchanged


def _remap_tokenizer(document: dict, new_id: dict[int, int]) -> dict:
    """tokenizer.json with only the kept pieces, renumbered; special tokens and the post-processor's too."""
    model = document["model"]
    if model.get("type") != "WordPiece":
        raise ValueError(f"vocabulary pruning reads WordPiece tokenizers; this one is {model.get('type')}")
    model["vocab"] = {piece: new_id[old] for piece, old in model["vocab"].items() if old in new_id}
    for token in document.get("added_tokens") or []:
        token["id"] = new_id[token["id"]]
    processor = document.get("post_processor") or {}
    for key in ("sep", "cls"):  # RobertaProcessing (MPNet)
        if key in processor:
            processor[key] = [processor[key][0], new_id[processor[key][1]]]
    for special in (processor.get("special_tokens") or {}).values():  # TemplateProcessing (BERT)
        special["ids"] = [new_id[i] for i in special["ids"]]
    return document


def prune_vocabulary(source: str | Path, texts: Sequence[str], out: str | Path,
                     check_texts: Sequence[str] = ()) -> VocabularyReport:
    """A copy of the model folder at `source` whose token table holds only what `texts` use; checked on
    `check_texts` (dev) against the original."""
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModelForSequenceClassification, PreTrainedTokenizerFast

    from llmneo.inference import Predictor
    from llmneo.modelfolder import load_tokenizer

    source, out = Path(source), Path(out)
    tokenizer = load_tokenizer(source)
    used = {i for ids in tokenizer(list(texts), truncation=False)["input_ids"] for i in ids}
    special = set(tokenizer.all_special_ids) | {t["id"] for t in json.loads(tokenizer.backend_tokenizer.to_str())
                                                ["added_tokens"]}
    kept = sorted(used | special)
    new_id = {old: new for new, old in enumerate(kept)}
    document = _remap_tokenizer(json.loads(tokenizer.backend_tokenizer.to_str()), new_id)
    model = AutoModelForSequenceClassification.from_pretrained(source).eval()
    before = sum(p.numel() for p in model.parameters())
    table = model.get_input_embeddings()
    pad = new_id.get(tokenizer.pad_token_id)
    smaller = torch.nn.Embedding(len(kept), table.embedding_dim, padding_idx=pad)
    smaller.weight.data = table.weight.data[torch.tensor(kept)].clone()
    model.set_input_embeddings(smaller)
    model.config.vocab_size = len(kept)
    model.config.pad_token_id = pad
    for key in ("bos_token_id", "eos_token_id"):  # a classifier reads neither; kept when its token is
        if getattr(model.config, key, None) is not None:
            setattr(model.config, key, new_id.get(getattr(model.config, key)))
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    model.save_pretrained(out, safe_serialization=True)
    fast = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(document)),
                                   **{key: value for key, value in tokenizer.special_tokens_map.items()
                                      if isinstance(value, str)})
    fast.save_pretrained(out)
    meta = read_model_meta(source)
    meta["vocabulary"] = {"kept": len(kept), "of": len(tokenizer), "pruned_from": str(source)}
    write_model_meta(out, meta)
    return _check(source, out, tokenizer, set(kept), check_texts, before, sum(p.numel() for p in model.parameters()),
                  len(kept), len(tokenizer), Predictor)


def _check(source: Path, out: Path, tokenizer, kept: set[int], texts: Sequence[str], before: int, after: int,
           kept_count: int, total: int, predictor_class) -> VocabularyReport:
    if not texts:
        return VocabularyReport(out, kept_count, total, before, after, 0, 0, 0.0, 1.0)
    original = predictor_class.load(source, backend="torch").predict_logits(list(texts))
    pruned = predictor_class.load(out, backend="torch").predict_logits(list(texts))
    covered = np.array([set(ids) <= kept for ids in tokenizer(list(texts), truncation=False)["input_ids"]])
    difference = float(np.abs(original[covered] - pruned[covered]).max()) if covered.any() else 0.0
    same = float(np.mean(original.argmax(1) == pruned.argmax(1)))
    return VocabularyReport(out, kept_count, total, before, after, len(texts), int((~covered).sum()), difference, same)
