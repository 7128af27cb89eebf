"""Parameter counts of any torch module (the one place they are computed)."""

from __future__ import annotations

from torch import nn

__all__ = ["count_parameters", "total_parameters"]


def total_parameters(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def count_parameters(model: nn.Module) -> dict[str, float]:
    """Total and trainable parameters, and the trainable share (what LoRA leaves to train)."""
    total = total_parameters(model)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total": total, "trainable": trainable, "trainable_share": trainable / max(total, 1)}
