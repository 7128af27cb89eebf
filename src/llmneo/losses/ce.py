"""Cross-entropy on the gold label: the hard-label term, defined on rows that have one."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from llmneo.losses.base import LossInputs, LossTerm

__all__ = ["CrossEntropy"]


class CrossEntropy(LossTerm):
    name = "ce"

    def rows(self, inputs: LossInputs, active: torch.Tensor) -> torch.Tensor:
        labels = inputs.labels.clamp_min(0)  # an unlabelled row's slot holds IGNORE_LABEL; it is masked out
        return F.cross_entropy(inputs.student_logits.float(), labels, reduction="none") * (active & inputs.gold)
