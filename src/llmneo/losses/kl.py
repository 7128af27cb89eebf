"""Forward KL(teacher || student): Hinton et al.'s distillation term, mass-covering."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from llmneo.losses.base import DivergenceTerm

__all__ = ["KL", "kl_divergence"]


def kl_divergence(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) per row. Logits: (B, C), already divided by T; returns (B,)."""
    student_log_probs = F.log_softmax(student_logits, dim=-1)  # (B, C)
    teacher_log_probs = F.log_softmax(teacher_logits, dim=-1)  # (B, C)
    return F.kl_div(student_log_probs, teacher_log_probs, log_target=True, reduction="none").sum(-1)


class KL(DivergenceTerm):
    name = "kl"
    divergence = staticmethod(kl_divergence)
