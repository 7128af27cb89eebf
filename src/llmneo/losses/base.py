"""The interface every loss term implements, and what the trainer hands it.

A term turns one batch into a value per row; `LossComposition` weighs each row by whether it has a gold
label, adds the terms and averages over the batch. A term that needs something of the teacher beyond
the batch (its pooled hidden states, say) declares it as a `TeacherSignal`: the cache computes and stores
it like the logits, and the trainer passes it through by name, so it knows nothing of any particular term.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

__all__ = ["IGNORE_LABEL", "DivergenceTerm", "LossInputs", "LossTerm", "SignalContext", "TeacherSignal"]

IGNORE_LABEL = -100  # a row without a gold label (a transfer-set row), as in transformers' ignore_index


@dataclass(frozen=True)
class TeacherSignal:
    """Something of the teacher's a term learns from, for every training row: its class logits, or the
    mean-pooled outputs of some of its layers."""

    kind: Literal["logits", "pooled_hidden"]
    layers: tuple[int, ...] = ()

    @property
    def name(self) -> str:
        return self.kind if not self.layers else f"{self.kind}:{','.join(map(str, self.layers))}"


LOGITS = TeacherSignal("logits")


@dataclass
class SignalContext:
    """What a term may read to choose its signals and size its own parameters (a width bridge, say)."""

    student: nn.Module
    teacher_depth: Callable[[], int]  # the teacher's layer count, read only by terms that need it
    cut_layers: list[int] | None = None  # the teacher layers the student was cut from, when it was


@dataclass
class LossInputs:
    """One training batch as the terms see it. Shapes: logits (B, C), labels (B,)."""

    student_logits: torch.Tensor
    labels: torch.Tensor  # IGNORE_LABEL where a row has no gold label
    teacher: dict[str, torch.Tensor] = field(default_factory=dict)  # TeacherSignal.name -> (B, ...)
    student_hidden_states: tuple[torch.Tensor, ...] | None = None  # (B, T, H) per layer, embeddings first
    attention_mask: torch.Tensor | None = None  # (B, T)
    temperature: float = 1.0

    @property
    def gold(self) -> torch.Tensor:
        return self.labels != IGNORE_LABEL  # (B,)


class _NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LossTerm(nn.Module):
    """One term of the loss. Subclasses set `name`, implement `rows`, and may declare `Options` (their own
    config keys, beside `gold` and `unlabelled`), teacher `signals`, and parameters made in `bind`."""

    name: ClassVar[str]
    needs_student_hidden_states: ClassVar[bool] = False
    Options: ClassVar[type[BaseModel]] = _NoOptions

    def __init__(self, options: BaseModel):
        super().__init__()
        self.options = options

    def signals(self, context: SignalContext) -> list[TeacherSignal]:
        """The teacher signals this term reads (none by default)."""
        return []

    def bind(self, context: SignalContext, signals: dict[str, np.ndarray]) -> None:
        """Make parameters that depend on the student or on the cached signals' shapes (none by default)."""

    def rows(self, inputs: LossInputs, active: torch.Tensor) -> torch.Tensor:
        """(B,) this term's value per row; 0 where `active` (B,) is False, whose inputs must not be read
        (a gold row's teacher logits are placeholders when no term distils gold rows)."""
        raise NotImplementedError


class DivergenceTerm(LossTerm):
    """A divergence between temperature-softened teacher and student distributions.

    The T^2 factor that keeps the soft gradients on the scale of the hard ones (Hinton et al., 2015) is
    applied here, once, for every divergence. Computed in fp32 so bf16 students keep the small
    differences between softened distributions.
    """

    def signals(self, context: SignalContext) -> list[TeacherSignal]:
        return [LOGITS]

    @staticmethod
    def divergence(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        """(B,) per row, from (B, C) logits already divided by T."""
        raise NotImplementedError

    def rows(self, inputs: LossInputs, active: torch.Tensor) -> torch.Tensor:
        temperature = inputs.temperature
        student = inputs.student_logits.float()
        teacher = inputs.teacher[LOGITS.name].float().masked_fill(~active.unsqueeze(-1), 0.0)  # (B, C)
        return self.divergence(student / temperature, teacher / temperature) * temperature**2 * active


def parse_options(term: type[LossTerm], raw: dict[str, Any], where: str) -> BaseModel:
    """A term's own options, validated; an error names the key (`loss.terms.<name>.<key>`)."""
    from pydantic import ValidationError

    try:
        return term.Options.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        message = "unknown key" if first["type"] == "extra_forbidden" else first["msg"]
        raise ValueError(f"{where}.{key}: {message}") from None
