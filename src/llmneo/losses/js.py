"""Jensen-Shannon: symmetric and bounded by log 2, gentler where teacher and student disagree."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from llmneo.losses.base import DivergenceTerm

__all__ = ["JS", "js_divergence"]


def js_divergence(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """JS per row: (B, C) logits divided by T -> (B,)."""
    student_probs = F.softmax(student_logits, dim=-1)
    teacher_probs = F.softmax(teacher_logits, dim=-1)
    log_mixture = torch.log((student_probs + teacher_probs) / 2).clamp_min(-1e4)  # (B, C)
    to_student = F.kl_div(log_mixture, student_probs, reduction="none").sum(-1)  # (B,) KL(student || mixture)
    to_teacher = F.kl_div(log_mixture, teacher_probs, reduction="none").sum(-1)
    return (to_student + to_teacher) / 2


class JS(DivergenceTerm):
    name = "js"
    divergence = staticmethod(js_divergence)
