"""Reverse KL(student || teacher): mode-seeking, the student need not cover every teacher mode."""

from __future__ import annotations

import torch

from llmneo.losses.base import DivergenceTerm
from llmneo.losses.kl import kl_divergence

__all__ = ["ReverseKL", "reverse_kl_divergence"]


def reverse_kl_divergence(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """KL(student || teacher) per row: (B, C) logits divided by T -> (B,)."""
    return kl_divergence(teacher_logits, student_logits)


class ReverseKL(DivergenceTerm):
    name = "reverse_kl"
    divergence = staticmethod(reverse_kl_divergence)
