"""How much arithmetic a forward pass is, and how much this machine can do: the benchmark's yardsticks.

`forward_flops` is an analytic count from the model's `config.json`, so the same number applies to
a model whether PyTorch or ONNX Runtime (fp32 or int8) runs it. It counts the matrix multiplies,
which are all but a few percent of a transformer's work, at 2 FLOPs per multiply-add:

    per token and layer:  2 * (H*q + 2*H*kv + q*H)      Q, K, V and output projections
                        + 2 * m * H * I                  feed-forward (m = 2, or 3 when gated)
    per sequence, layer:  2 * 2 * T^2 * q                attention scores QK^T and their use on V

with H the hidden size, I the feed-forward size, q = heads * head_dim, kv = kv_heads * head_dim and
T the padded sequence length actually computed. Embedding lookups, LayerNorm, softmax and the
classification head are left out (memory-bound and small). Padding tokens are counted because
the hardware computes them: that is the work done, not the work needed.

The ceiling these FLOPs are compared with is measured in `llmneo.bench.peak`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["GATED_MLP_TYPES", "batches_flops", "forward_flops"]

# Model types whose feed-forward is gated (SwiGLU/GeGLU: gate, up and down projections).
GATED_MLP_TYPES = {"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "phi3", "smollm3", "olmo2"}


def _shape(config: dict[str, Any]) -> tuple[int, int, int, int, int, bool]:
    """(layers, hidden, intermediate, q width, kv width, gated) from a Hugging Face config dict."""
    try:
        hidden = int(config["hidden_size"])
        layers = int(config["num_hidden_layers"])
        heads = int(config["num_attention_heads"])
        intermediate = int(config.get("intermediate_size") or 4 * hidden)
    except KeyError as missing:
        raise ValueError(f"config.json lacks {missing}: cannot count FLOPs") from None
    head_dim = int(config.get("head_dim") or hidden // heads)
    kv_heads = int(config.get("num_key_value_heads") or heads)
    gated = config.get("model_type") in GATED_MLP_TYPES
    return layers, hidden, intermediate, heads * head_dim, kv_heads * head_dim, gated


def forward_flops(config: dict[str, Any], batch: int, seq_len: int) -> float:
    """FLOPs of one forward pass over a (batch, seq_len) padded batch (see the module docstring)."""
    layers, hidden, intermediate, q_width, kv_width, gated = _shape(config)
    projections = 2 * (hidden * q_width + 2 * hidden * kv_width + q_width * hidden)
    feed_forward = 2 * (3 if gated else 2) * hidden * intermediate
    per_layer = batch * seq_len * (projections + feed_forward) + batch * 4 * seq_len**2 * q_width
    return float(layers * per_layer)


def batches_flops(config: dict[str, Any], shapes: Iterable[tuple[int, int]]) -> float:
    """Total FLOPs over batches given as (batch, seq_len) shapes."""
    return sum(forward_flops(config, batch, seq_len) for batch, seq_len in shapes)
