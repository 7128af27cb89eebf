"""Knowledge-distillation losses over class logits: pure functions and a thin registry.

Each divergence compares temperature-softened distributions; the T^2 factor that keeps the soft
gradients on the scale of the hard ones (Hinton et al., 2015) is applied in one place only,
`distillation_loss`. KD is over class logits, so teacher and student may use different tokenizers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = [
    "DIVERGENCES",
    "LossParts",
    "distillation_loss",
    "js_divergence",
    "kl_divergence",
    "reverse_kl_divergence",
]


def kl_divergence(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Forward KL(teacher || student), mean over the batch. Logits: (B, C), already divided by T."""
    student_log_probs = F.log_softmax(student_logits, dim=-1)  # (B, C)
    teacher_log_probs = F.log_softmax(teacher_logits, dim=-1)  # (B, C)
    return F.kl_div(student_log_probs, teacher_log_probs, log_target=True, reduction="batchmean")


def reverse_kl_divergence(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Reverse KL(student || teacher): mode-seeking, the student need not cover every teacher mode."""
    return kl_divergence(teacher_logits, student_logits)


def js_divergence(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon: symmetric and bounded by log 2, gentler when teacher and student disagree."""
    student_probs = F.softmax(student_logits, dim=-1)
    teacher_probs = F.softmax(teacher_logits, dim=-1)
    log_mixture = torch.log((student_probs + teacher_probs) / 2).clamp_min(-1e4)  # (B, C)
    to_student = F.kl_div(log_mixture, student_probs, reduction="batchmean")  # KL(student || mixture)
    to_teacher = F.kl_div(log_mixture, teacher_probs, reduction="batchmean")
    return (to_student + to_teacher) / 2


DIVERGENCES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "kl": kl_divergence,
    "reverse_kl": reverse_kl_divergence,
    "js": js_divergence,
}


@dataclass
class LossParts:
    total: torch.Tensor
    kd: torch.Tensor
    ce: torch.Tensor


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
                      temperature: float = 2.0, alpha: float = 0.5, kind: str = "kl") -> LossParts:
    """alpha * T^2 * D(teacher/T, student/T) + (1 - alpha) * CE(student, labels).

    Shapes: logits (B, C), labels (B,). Computed in fp32 so bf16 students do not lose the small
    differences between softened distributions.
    """
    if kind not in DIVERGENCES:
        raise ValueError(f"loss.kind {kind!r}: expected one of {sorted(DIVERGENCES)}")
    student_logits, teacher_logits = student_logits.float(), teacher_logits.float()
    kd = DIVERGENCES[kind](student_logits / temperature, teacher_logits / temperature) * temperature**2
    ce = F.cross_entropy(student_logits, labels)
    return LossParts(alpha * kd + (1 - alpha) * ce, kd, ce)
