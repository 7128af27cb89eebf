"""Knowledge-distillation losses over class logits and hidden states: pure functions and a thin registry.

Each divergence compares temperature-softened distributions; the T^2 factor that keeps the soft
gradients on the scale of the hard ones (Hinton et al., 2015) is applied in one place only,
`distillation_loss`. KD is over class logits, so teacher and student may use different tokenizers.
The intermediate-layer term (`hidden_state_loss`) compares *mean-pooled* hidden states, which keeps
that freedom: pooling over tokens makes the term independent of how each side tokenised the text,
and a learned projection (trained with the student, dropped when it is saved) bridges widths.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = [
    "DIVERGENCES",
    "IGNORE_LABEL",
    "LossParts",
    "distillation_loss",
    "hidden_state_loss",
    "js_divergence",
    "kl_divergence",
    "mean_pool",
    "reverse_kl_divergence",
]

IGNORE_LABEL = -100  # a row without a gold label (a transfer-set row): KD only, as in transformers' ignore_index


def kl_divergence(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Forward KL(teacher || student) per row. Logits: (B, C), already divided by T; returns (B,)."""
    student_log_probs = F.log_softmax(student_logits, dim=-1)  # (B, C)
    teacher_log_probs = F.log_softmax(teacher_logits, dim=-1)  # (B, C)
    return F.kl_div(student_log_probs, teacher_log_probs, log_target=True, reduction="none").sum(-1)


def reverse_kl_divergence(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Reverse KL(student || teacher): mode-seeking, the student need not cover every teacher mode."""
    return kl_divergence(teacher_logits, student_logits)


def js_divergence(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon per row: symmetric and bounded by log 2, gentler when teacher and student disagree."""
    student_probs = F.softmax(student_logits, dim=-1)
    teacher_probs = F.softmax(teacher_logits, dim=-1)
    log_mixture = torch.log((student_probs + teacher_probs) / 2).clamp_min(-1e4)  # (B, C)
    to_student = F.kl_div(log_mixture, student_probs, reduction="none").sum(-1)  # (B,) KL(student || mixture)
    to_teacher = F.kl_div(log_mixture, teacher_probs, reduction="none").sum(-1)
    return (to_student + to_teacher) / 2


DIVERGENCES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "kl": kl_divergence,
    "reverse_kl": reverse_kl_divergence,
    "js": js_divergence,
}


@dataclass
class LossParts:
    total: torch.Tensor
    kd: torch.Tensor  # mean over the rows it weighs on (every row, but only the unlabelled ones at alpha 0)
    ce: torch.Tensor  # mean over the gold rows (0 when the batch has none)


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
                      temperature: float = 2.0, alpha: float = 0.5, kind: str = "kl") -> LossParts:
    """Per row, averaged over the batch: a gold row gives alpha * T^2 * D + (1 - alpha) * CE, a row
    labelled IGNORE_LABEL (transfer set, no gold label) gives T^2 * D alone.

    Shapes: logits (B, C), labels (B,). Computed in fp32 so bf16 students do not lose the small
    differences between softened distributions.
    """
    if kind not in DIVERGENCES:
        raise ValueError(f"loss.kind {kind!r}: expected one of {sorted(DIVERGENCES)}")
    student_logits, teacher_logits = student_logits.float(), teacher_logits.float()
    gold = labels != IGNORE_LABEL  # (B,)
    distilled = ~gold if alpha == 0 else torch.ones_like(gold)  # (B,) the rows KD weighs on
    # At alpha 0 the gold rows' teacher logits may be placeholders (never computed): they are never read.
    teacher_logits = teacher_logits.masked_fill(~distilled.unsqueeze(-1), 0.0)
    kd_rows = DIVERGENCES[kind](student_logits / temperature, teacher_logits / temperature) * temperature**2 * distilled
    ce_rows = F.cross_entropy(student_logits, labels.clamp_min(0), reduction="none") * gold  # (B,) 0 off gold
    per_row = torch.where(gold, alpha * kd_rows + (1 - alpha) * ce_rows, kd_rows)
    kd = kd_rows.sum() / distilled.sum().clamp_min(1)
    ce = ce_rows.sum() / gold.sum().clamp_min(1)
    return LossParts(per_row.mean(), kd, ce)



def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average of the real tokens' hidden states: (B, T, H) and (B, T) -> (B, H); padding weighs nothing."""
    weights = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1)


def hidden_state_loss(student_states: torch.Tensor, teacher_states: torch.Tensor) -> torch.Tensor:
    """Patient KD's intermediate term (Sun et al., 2019): the squared distance between L2-normalised pooled
    hidden states, averaged over layers and rows. Shapes: (B, L, H) both, the student's already projected
    to the teacher's width. Normalising first makes the term blind to each layer's scale, which differs
    between networks and along depth. Zero when the states point the same way; at most 4 per layer."""
    student = F.normalize(student_states.float(), dim=-1)  # (B, L, H)
    teacher = F.normalize(teacher_states.float(), dim=-1)
    return (student - teacher).pow(2).sum(-1).mean()
