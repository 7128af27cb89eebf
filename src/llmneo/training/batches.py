"""From texts to Trainer batches: tokenised datasets, dev in length order, and the collator.

Teacher signals (logits, pooled hidden states: whatever the loss terms declared) are not dataset
columns: as columns they would become lists of Python floats. Each training row carries its index, and
the collator looks every signal up in its numpy array by that index.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from datasets import Dataset
from transformers import DataCollatorWithPadding

from llmneo.config import ModelConfig
from llmneo.modelfolder.weights import LoadedModel

__all__ = ["SignalCollator", "in_dev_order", "length_sorted", "prompt_texts", "tokenised"]


def prompt_texts(texts: list[str], model_cfg: ModelConfig) -> list[str]:
    """What the model reads: the verbalizer's template around each text, or the text itself."""
    if model_cfg.kind == "verbalizer":
        return [model_cfg.template.format(text=t) for t in texts]
    return texts


def tokenised(loaded: LoadedModel, texts: list[str], labels: list[int], max_length: int,
              with_rows: bool = False) -> Dataset:
    """Token ids, attention masks and labels; `with_rows` adds each row's index for the collator."""
    columns: dict[str, Any] = {"text": texts, "labels": labels}
    if with_rows:
        columns["row"] = list(range(len(texts)))
    dataset = Dataset.from_dict(columns)
    return dataset.map(lambda batch: loaded.tokenizer(batch["text"], truncation=True, max_length=max_length),
                       batched=True, remove_columns=["text"], desc="tokenising")


def length_sorted(dataset: Dataset) -> tuple[Dataset, np.ndarray]:
    """Dev sorted by token count, and the order that did it. Evaluation pads each batch to its longest
    row, so sorted batches carry almost no padding: 2-3x faster on SST-2 dev, which the stage evaluates
    every `eval_steps`. Metrics do not depend on row order; logits are put back in dev order."""
    order = np.argsort([len(ids) for ids in dataset["input_ids"]], kind="stable")
    return dataset.select(order), order


def in_dev_order(sorted_logits: np.ndarray, order: np.ndarray) -> np.ndarray:
    logits = np.empty_like(sorted_logits)
    logits[order] = sorted_logits
    return logits


class SignalCollator:
    """Dynamic padding for the token columns; the teacher signals of the batch's rows alongside, by name."""

    def __init__(self, tokenizer: Any, signals: dict[str, np.ndarray] | None = None):
        self.pad = DataCollatorWithPadding(tokenizer)
        self.signals = signals or {}  # TeacherSignal.name -> (N_train, ...)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        rows = [f.pop("row") for f in features] if "row" in features[0] else None
        batch = self.pad(features)
        if rows is not None and self.signals:
            batch["teacher"] = {name: torch.from_numpy(np.ascontiguousarray(array[rows], dtype=np.float32))
                                for name, array in self.signals.items()}
        return batch
