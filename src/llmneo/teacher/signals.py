"""What a teacher model gives beyond its logits: mean-pooled hidden states of chosen layers.

A loss term declares the signal it needs (`llmneo.losses.TeacherSignal`); the cache stage computes it
with the live teacher through this module and stores it by shard like the logits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from llmneo.losses.hidden import pooled_states
from llmneo.progress import progress

__all__ = ["teacher_pooled_states"]


def teacher_pooled_states(model: nn.Module, encode: Callable[[list[str]], dict[str, np.ndarray]],
                          texts: Sequence[str], layers: Sequence[int], batch_size: int, mixed_precision: str = "no",
                          label: str | None = None) -> np.ndarray:
    """(N, L * H) pooled hidden states of `layers` for `texts`, in their order (batches length-sorted)."""
    order = np.argsort([len(t) for t in texts], kind="stable")
    device = next(model.parameters()).device
    autocast = {"bf16": torch.bfloat16}.get(mixed_precision)
    rows: np.ndarray | None = None
    starts = range(0, len(texts), batch_size)
    for start in progress(starts, label or "teacher hidden states", unit="batch"):
        index = order[start:start + batch_size]
        encoded = encode([texts[i] for i in index])
        inputs = {k: torch.from_numpy(v).to(device) for k, v in encoded.items()
                  if k in ("input_ids", "attention_mask", "token_type_ids")}
        with torch.inference_mode(), torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
            outputs = model(**inputs, output_hidden_states=True)
            states = pooled_states(outputs.hidden_states, inputs["attention_mask"], layers).float()  # (B, L, H)
        flat = states.flatten(1).cpu().numpy()  # (B, L * H)
        if rows is None:
            rows = np.empty((len(texts), flat.shape[1]), dtype=np.float32)
        rows[index] = flat
    return rows if rows is not None else np.zeros((0, 0), dtype=np.float32)
