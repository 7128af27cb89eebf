"""Patient KD's intermediate-layer term (Sun et al., 2019) on mean-pooled hidden states.

Each student layer learns the direction of one teacher layer's mean-pooled output, through a learned
linear map that bridges the widths (TinyBERT's W_h; trained with the student, never saved with it: the
served model is the plain student). Pooling over tokens is what lets a student with another tokenizer
learn from the teacher's layers at all. The teacher's pooled states are a `TeacherSignal`, cached by shard
like its logits.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from llmneo.losses.base import LossInputs, LossTerm, SignalContext, TeacherSignal

__all__ = [
    "Hidden",
    "HiddenProjection",
    "depth_and_width",
    "hidden_state_distance",
    "mean_pool",
    "pooled_states",
    "teacher_layers_for",
]


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average of the real tokens' hidden states: (B, T, H) and (B, T) -> (B, H); padding weighs nothing."""
    weights = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1)


def pooled_states(hidden_states: Sequence[torch.Tensor], attention_mask: torch.Tensor,
                  layers: Sequence[int]) -> torch.Tensor:
    """Mean-pooled outputs of `layers` (0-based): (B, L, H). hidden_states[0] is the embeddings, so
    layer k's output is hidden_states[k + 1]."""
    return torch.stack([mean_pool(hidden_states[k + 1], attention_mask) for k in layers], dim=1)


def hidden_state_distance(student_states: torch.Tensor, teacher_states: torch.Tensor) -> torch.Tensor:
    """(B,) squared distance between L2-normalised pooled states, averaged over layers. Shapes: (B, L, H)
    both, the student's already projected to the teacher's width. Normalising first makes the term blind to
    each layer's scale, which differs between networks and along depth. 0 when the states point the same
    way; at most 4 per layer."""
    student = F.normalize(student_states.float(), dim=-1)  # (B, L, H)
    teacher = F.normalize(teacher_states.float(), dim=-1)
    return (student - teacher).pow(2).sum(-1).mean(-1)


class HiddenProjection(nn.Module):
    """One linear map per paired layer, student width -> teacher width. Starts as the identity when the
    widths match: a student cut from its teacher's own layers begins from the teacher's geometry."""

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
                       cut_layers: list[int] | None) -> list[int]:
    """The teacher layer (0-based) each student layer learns from, in order: the configured ones; for a
    student cut from its teacher, the layers it was cut from; else evenly spaced, the last student layer on
    the last teacher layer (Patient KD's "skip" scheme)."""
    if configured is not None:
        if len(configured) != student_layers:
            raise ValueError(f"loss.hidden_layers has {len(configured)} entries; the student has {student_layers} "
                             "layers, one teacher layer each")
        if bad := [layer for layer in configured if not 0 <= layer < teacher_layers]:
            raise ValueError(f"loss.hidden_layers: {bad} outside the teacher's layers 0..{teacher_layers - 1}")
        return list(configured)
    if cut_layers is not None and len(cut_layers) == student_layers and max(cut_layers) < teacher_layers:
        return list(cut_layers)
    return [round((i + 1) * teacher_layers / student_layers) - 1 for i in range(student_layers)]


class _HiddenOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    layers: list[int] | None = Field(None, description="Teacher layers, one per student layer, in order.")


class Hidden(LossTerm):
    name = "hidden"
    needs_student_hidden_states = True
    Options = _HiddenOptions

    def __init__(self, options: _HiddenOptions):
        super().__init__(options)
        self.projection: HiddenProjection | None = None
        self._signal: TeacherSignal | None = None

    def signals(self, context: SignalContext) -> list[TeacherSignal]:
        student_layers = depth_and_width(context.student)[0]
        layers = teacher_layers_for(student_layers, context.teacher_depth(), self.options.layers, context.cut_layers)
        print(f"[student] intermediate-layer term: student layers -> teacher layers {layers}")
        self._signal = TeacherSignal("pooled_hidden", tuple(layers))
        return [self._signal]

    def bind(self, context: SignalContext, signals: dict[str, np.ndarray]) -> None:
        layers, width = depth_and_width(context.student)
        states = signals[self._signal.name]  # (N, L * H_teacher)
        if states.shape[1] % layers:
            raise ValueError(f"teacher hidden states of width {states.shape[1]} do not split into {layers} layers")
        device = next(context.student.parameters()).device
        self.projection = HiddenProjection(layers, width, states.shape[1] // layers).to(device)

    def rows(self, inputs: LossInputs, active: torch.Tensor) -> torch.Tensor:
        layers = len(self.projection.maps)
        student = pooled_states(inputs.student_hidden_states, inputs.attention_mask, range(layers))  # (B, L, H_s)
        teacher = inputs.teacher[self._signal.name].view(len(inputs.labels), layers, -1)  # (B, L, H_t)
        return hidden_state_distance(self.projection(student), teacher) * active
