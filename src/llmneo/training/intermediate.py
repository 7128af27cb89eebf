"""The intermediate-layer term's training side: which layers pair up, the projection, the pooled states.

The maths is `llmneo.maths.losses.hidden_state_loss`. This module owns what needs models: the
student-layer -> teacher-layer map, the learned projection that bridges widths (trained with the
student, never saved with it: the served model is the plain student), and the teacher's pooled hidden
states for the cache. Mean pooling over tokens is what lets a student with another tokenizer learn
from the teacher's layers at all; Patient KD (Sun et al., 2019) pooled to one vector per layer too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from llmneo.config import ConfigError
from llmneo.maths.losses import mean_pool

__all__ = ["HiddenProjection", "depth_and_width", "pooled_states", "teacher_layers_for", "teacher_pooled_states"]


class HiddenProjection(nn.Module):
    """One linear map per paired layer, student width -> teacher width (TinyBERT's W_h).

    Starts as the identity when the widths match: a student cut from its teacher's own layers then
    begins from the teacher's geometry instead of a random rotation of it.
    """

    def __init__(self, layers: int, student_width: int, teacher_width: int):
        super().__init__()
        self.maps = nn.ModuleList(nn.Linear(student_width, teacher_width) for _ in range(layers))
        if student_width == teacher_width:
            for linear in self.maps:
                nn.init.eye_(linear.weight)
                nn.init.zeros_(linear.bias)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        """(B, L, H_student) -> (B, L, H_teacher)."""
        return torch.stack([linear(states[:, i]) for i, linear in enumerate(self.maps)], dim=1)


def depth_and_width(model: nn.Module) -> tuple[int, int]:
    """(transformer layers, hidden size) from a transformers model's config (through a PEFT wrapper too)."""
    config = model.config
    return int(config.num_hidden_layers), int(config.hidden_size)


def teacher_layers_for(student_layers: int, teacher_layers: int, configured: list[int] | None,
                       keep_layers: list[int] | None) -> list[int]:
    """The teacher layer (0-based) each student layer learns from, in order.

    `configured` (loss.hidden_layers) wins; a student cut from its teacher (`keep_layers`) learns from the
    layers it was cut from; otherwise layers are evenly spaced, the last student layer on the last teacher
    layer (Patient KD's "skip" scheme).
    """
    if configured is not None:
        if len(configured) != student_layers:
            raise ConfigError(f"loss.hidden_layers has {len(configured)} entries; the student has {student_layers} "
                              "layers, one teacher layer each")
        if bad := [layer for layer in configured if not 0 <= layer < teacher_layers]:
            raise ConfigError(f"loss.hidden_layers: {bad} outside the teacher's layers 0..{teacher_layers - 1}")
        return list(configured)
    if keep_layers is not None and len(keep_layers) == student_layers and max(keep_layers) < teacher_layers:
        return list(keep_layers)
    return [round((i + 1) * teacher_layers / student_layers) - 1 for i in range(student_layers)]


def pooled_states(hidden_states: Sequence[torch.Tensor], attention_mask: torch.Tensor,
                  layers: Sequence[int]) -> torch.Tensor:
    """Mean-pooled outputs of `layers` (0-based): (B, L, H). hidden_states[0] is the embeddings, so
    layer k's output is hidden_states[k + 1]."""
    return torch.stack([mean_pool(hidden_states[k + 1], attention_mask) for k in layers], dim=1)


def teacher_pooled_states(model: nn.Module, encode: Callable[[list[str]], dict[str, np.ndarray]],
                          texts: Sequence[str], layers: Sequence[int], batch_size: int, mixed_precision: str = "no",
                          progress: str | None = None) -> np.ndarray:
    """(N, L * H) pooled hidden states of `layers` for `texts`, in their order (batches length-sorted)."""
    order = np.argsort([len(t) for t in texts], kind="stable")
    device = next(model.parameters()).device
    autocast = {"bf16": torch.bfloat16}.get(mixed_precision)
    rows: np.ndarray | None = None
    starts = range(0, len(texts), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=progress, unit="batch", total=len(starts))
    for start in starts:
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
