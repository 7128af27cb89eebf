"""The PyTorch side of a model folder: the verbalizer module, saving and loading weights.

A model here is anything whose forward returns class logits of shape (B, C): either a
`AutoModelForSequenceClassification`, or a causal LM read through a verbalizer (the next-token
logits of one label word per class, after a prompt template). Both are saved as a model folder
(docs/CONTRACTS.md) so that inference, export and serving never ask which kind they have.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.modeling_outputs import SequenceClassifierOutput

from llmneo.modelfolder import (
    ADAPTER_DIR,
    FORMAT_VERSION,
    load_tokenizer,
    read_model_meta,
    write_model_meta,
)

__all__ = [
    "DTYPES",
    "LoadedModel",
    "VerbalizerClassifier",
    "load_model_folder",
    "pick_device",
    "save_model_folder",
]

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class LoadedModel:
    """A model ready for training or inference, with what is needed to save it again."""

    model: nn.Module
    tokenizer: PreTrainedTokenizerBase
    kind: str
    label_token_ids: list[int] | None = None


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))  # one GPU per launched process
    return torch.device(device)


class VerbalizerClassifier(nn.Module):
    """A causal LM read as a classifier: class logits are the next-token logits of the label words.

    With right padding the prediction for the next token sits at the last real token, so the
    logits are gathered there rather than at position -1 (which may be padding).
    """

    def __init__(self, lm: PreTrainedModel, label_token_ids: list[int]):
        super().__init__()
        self.lm = lm
        self.register_buffer("label_token_ids", torch.tensor(label_token_ids), persistent=False)
        self.config = lm.config

    def _body(self) -> nn.Module:
        """The transformer without its LM head (PEFT wraps the LM; the body sits under the base model)."""
        base = self.lm.get_base_model() if hasattr(self.lm, "get_base_model") else self.lm
        return getattr(base, base.base_model_prefix)

    def forward(self, input_ids, attention_mask=None, labels=None, **_: Any) -> SequenceClassifierOutput:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        hidden = self._body()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, H)
        last = attention_mask.sum(dim=1) - 1  # (B,) index of the last real token
        last_hidden = hidden[torch.arange(hidden.size(0), device=hidden.device), last]  # (B, H)
        # Only the label words' rows of the LM head are needed: (B, H) @ (H, C) instead of (H, V).
        head = self.lm.get_output_embeddings().weight[self.label_token_ids]  # (C, H)
        logits = last_hidden @ head.T  # (B, C)
        loss = nn.functional.cross_entropy(logits.float(), labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


def _peft_inner(loaded: LoadedModel):
    return loaded.model.lm if loaded.kind == "verbalizer" else loaded.model


def save_model_folder(loaded: LoadedModel, folder: str | Path, meta: dict[str, Any], merge: bool = True) -> Path:
    """Save weights, tokenizer and `llmneo_model.json`; a LoRA model also keeps its adapter in `adapter/`."""
    from peft import PeftModel

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    inner = _peft_inner(loaded)
    if isinstance(inner, PeftModel):
        inner.save_pretrained(folder / ADAPTER_DIR)
        # Unmerged: the plain base weights (unload() strips the LoRA layers from a copy), the adapter beside them.
        inner = inner.merge_and_unload() if merge else copy.deepcopy(inner).unload()
        meta = {**meta, "lora": {**(meta.get("lora") or {}), "merged": merge}}
    inner.save_pretrained(folder, safe_serialization=True)
    loaded.tokenizer.save_pretrained(folder)
    meta = {"format_version": FORMAT_VERSION, "kind": loaded.kind, "backend": "torch",
            "label_token_ids": loaded.label_token_ids, **meta}
    write_model_meta(folder, meta)
    return folder


def _with_adapter(model: PreTrainedModel, folder: Path) -> nn.Module:
    """A folder saved with `merge: false` holds base weights; its LoRA adapter is applied on load."""
    from peft import PeftModel

    return PeftModel.from_pretrained(model, folder / ADAPTER_DIR)


def load_model_folder(folder: str | Path, device: str = "auto", dtype: str = "fp32") -> LoadedModel:
    """Load a saved model folder for inference (merged weights; an unmerged folder gets its adapter applied)."""
    folder = Path(folder)
    meta = read_model_meta(folder)
    tokenizer = load_tokenizer(str(folder))
    kwargs = {"dtype": DTYPES[dtype]}
    unmerged = bool(meta.get("lora") and meta["lora"].get("merged") is False)
    if meta["kind"] == "classifier":
        model: nn.Module = AutoModelForSequenceClassification.from_pretrained(folder, **kwargs)
        if unmerged:
            model = _with_adapter(model, folder)
        loaded = LoadedModel(model, tokenizer, "classifier")
    else:
        lm = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
        if unmerged:
            lm = _with_adapter(lm, folder)
        loaded = LoadedModel(VerbalizerClassifier(lm, meta["label_token_ids"]), tokenizer, "verbalizer",
                             meta["label_token_ids"])
    loaded.model.to(pick_device(device)).eval()
    return loaded
