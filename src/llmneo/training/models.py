"""Build and adapt teacher and student models for training (saving is `llmneo.modelfolder.weights`).

`build_model` loads a hub id, folder, `pkg:` package or GGUF file as a C-class classifier: a
`AutoModelForSequenceClassification`, or a causal LM read through a `VerbalizerClassifier`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from llmneo.config import LoraSettings, ModelConfig
from llmneo.modelfolder import load_tokenizer
from llmneo.modelfolder.sources import resolve_model_source
from llmneo.modelfolder.weights import DTYPES, LoadedModel, VerbalizerClassifier

__all__ = [
    "apply_lora",
    "build_model",
    "default_lora_targets",
    "freeze",
    "keep_layers",
    "load_causal_lm",
    "narrow_ffn",
]

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


_LAYER_PATHS = ("model.layers", "bert.encoder.layer", "roberta.encoder.layer", "mpnet.encoder.layer",
                "encoder.layer", "layers", "lm.model.layers")
# Feed-forward block of one layer: the linears that make its units, and the one that reads them back.
_FFN_LINEARS = ((("intermediate.dense",), "output.dense"),                 # BERT, RoBERTa, MPNet
                (("mlp.gate_proj", "mlp.up_proj"), "mlp.down_proj"))      # Llama, Mistral, Qwen2


def _layer_list(model: nn.Module) -> tuple[nn.Module, str, nn.ModuleList]:
    """The module that owns the transformer layers, the attribute name, and the layers."""
    for owner_path in _LAYER_PATHS:
        owner: nn.Module = model
        *parents, attr = owner_path.split(".")
        try:
            for name in parents:
                owner = getattr(owner, name)
            return owner, attr, getattr(owner, attr)
        except AttributeError:
            continue
    raise ValueError(f"cannot find the transformer layers of {type(model).__name__}")


def keep_layers(model: PreTrainedModel, keep: list[int]) -> None:
    """Keep a subset of transformer layers in place (DistilBERT-style initialisation of a student)."""
    owner, attr, layers = _layer_list(model)
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


def narrow_ffn(model: PreTrainedModel, width: int) -> None:
    """Keep the `width` strongest feed-forward units of every layer: structured pruning, in place.

    Two thirds of a small encoder layer's compute is its feed-forward block, so a 3-layer student
    with narrower blocks costs what 2 full layers cost while keeping the depth it needs. A unit's
    strength is the norm of the weights that make it times the norm of the weights that read it
    (data-free, so the cut is deterministic). The result is a plain smaller model
    (`config.intermediate_size = width`): the saved folder, ONNX export and serving need nothing new.
    transformers ships the slicing (`prune_linear_layer`) but no feed-forward pruning; that is this.
    """
    from transformers.pytorch_utils import prune_linear_layer

    _, _, layers = _layer_list(model)
    for index, layer in enumerate(layers):
        in_paths, out_path = _ffn_paths(layer)
        out = layer.get_submodule(out_path)
        if not 0 < width < out.in_features:
            raise ValueError(f"ffn_width {width}: layer {index} has {out.in_features} feed-forward units; "
                             f"keep between 1 and {out.in_features - 1}")
        strength = out.weight.detach().float().norm(dim=0)
        for path in in_paths:
            strength = strength * layer.get_submodule(path).weight.detach().float().norm(dim=1)
        kept = strength.topk(width).indices.sort().values
        for path in in_paths:
            layer.set_submodule(path, prune_linear_layer(layer.get_submodule(path), kept, dim=0))
        layer.set_submodule(out_path, prune_linear_layer(out, kept, dim=1))
    model.config.intermediate_size = width


def _ffn_paths(layer: nn.Module) -> tuple[tuple[str, ...], str]:
    for in_paths, out_path in _FFN_LINEARS:
        try:
            if all(isinstance(layer.get_submodule(p), nn.Linear) for p in (*in_paths, out_path)):
                return in_paths, out_path
        except AttributeError:
            continue
    raise ValueError(f"ffn_width: cannot find the feed-forward linears of {type(layer).__name__}")


def _load_kwargs(cfg: ModelConfig) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"dtype": DTYPES[cfg.dtype], "low_cpu_mem_usage": True}
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


def _cut(model: PreTrainedModel, cfg: ModelConfig) -> None:
    """A student smaller than the network it starts from: fewer layers, then narrower ones."""
    if cfg.keep_layers:
        keep_layers(model, cfg.keep_layers)
    if cfg.ffn_width:
        narrow_ffn(model, cfg.ffn_width)


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
        _cut(model, cfg)
        return LoadedModel(model, tokenizer, "classifier")
    lm = load_causal_lm(cfg, source)
    words = cfg.label_words or [f" {name}" for name in labels]
    if len(words) != len(labels):
        raise ValueError(f"label_words has {len(words)} words for {len(labels)} labels")
    if any(not isinstance(word, str) for word in words):
        raise ValueError("label_words: a tuned verbalizer reads one one-token word per class; several words per "
                         "class are for a prompted teacher (teacher.finetune: false)")
    token_ids = _label_token_ids(tokenizer, words)
    return LoadedModel(VerbalizerClassifier(lm, token_ids), tokenizer, "verbalizer", token_ids)


def load_causal_lm(cfg: ModelConfig, source: str | None = None) -> PreTrainedModel:
    """The causal LM a verbalizer reads: from a folder, a hub id or a GGUF file (dequantised), cut if asked."""
    lm = AutoModelForCausalLM.from_pretrained(source or resolve_model_source(cfg.name_or_path), **_load_kwargs(cfg))
    if cfg.gguf_file:
        lm = _dequantised_copy(lm)
    _cut(lm, cfg)
    return lm


def freeze(model: nn.Module, embeddings: bool, first_layers: int) -> None:
    """Fix the token table and/or the first `first_layers` transformer layers (no gradient, no update)."""
    body = model.lm if isinstance(model, VerbalizerClassifier) else model
    body = body.get_base_model() if hasattr(body, "get_base_model") else body  # under PEFT: the wrapped model
    if embeddings:
        body.get_input_embeddings().weight.requires_grad_(False)
    if first_layers:
        _, _, layers = _layer_list(body)
        if first_layers >= len(layers):
            raise ValueError(f"freeze_layers {first_layers}: the model has only {len(layers)} layers; "
                             "at least one must train")
        layers[:first_layers].requires_grad_(False)


def default_lora_targets(model: nn.Module) -> list[str]:
    model_type = getattr(getattr(model, "config", None), "model_type", "")
    if model_type not in _LORA_TARGETS:
        raise ValueError(f"no default LoRA target_modules for model_type {model_type!r}: set lora.target_modules")
    return _LORA_TARGETS[model_type]


def apply_lora(loaded: LoadedModel, settings: LoraSettings) -> nn.Module:
    """Wrap the model with PEFT LoRA; the classification head is trained in full (`modules_to_save`)."""
    from peft import LoraConfig, TaskType, get_peft_model

    targets = settings.target_modules or default_lora_targets(loaded.model)
    # a copy: PEFT appends the task head ("classifier", "score") to the list it is given, in place
    extra = list(settings.modules_to_save) if settings.modules_to_save else None
    if loaded.kind == "verbalizer":
        config = LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                            target_modules=targets, task_type=TaskType.CAUSAL_LM, modules_to_save=extra)
        loaded.model.lm = get_peft_model(loaded.model.lm, config)
        return loaded.model
    config = LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                        target_modules=targets, task_type=TaskType.SEQ_CLS, modules_to_save=extra)
    loaded.model = get_peft_model(loaded.model, config)
    return loaded.model
