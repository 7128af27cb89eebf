"""Rows without a gold label (a transfer set) get the KD term alone, worked by hand."""

import pytest
import torch
import torch.nn.functional as F

from conftest import shorthand_loss
from llmneo.losses import IGNORE_LABEL
from llmneo.losses.kl import kl_divergence

STUDENT = torch.tensor([[2.0, -1.0], [0.5, 0.7], [1.0, 1.0]])
TEACHER = torch.tensor([[-1.0, 1.0], [3.0, 0.0], [0.0, 2.0]])


def test_an_unlabelled_row_contributes_kd_only():
    labels = torch.tensor([0, IGNORE_LABEL, 1])
    total, parts = shorthand_loss(STUDENT, TEACHER, labels, temperature=2.0, alpha=0.3)
    kd = kl_divergence(STUDENT / 2, TEACHER / 2) * 4  # (3,) per row, T^2 = 4
    ce = F.cross_entropy(STUDENT[[0, 2]], torch.tensor([0, 1]), reduction="none")  # the gold rows only
    expected = ((0.3 * kd[0] + 0.7 * ce[0]) + kd[1] + (0.3 * kd[2] + 0.7 * ce[1])) / 3
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert parts["ce_loss"].item() == pytest.approx(ce.mean().item(), rel=1e-6)
    assert parts["kl_loss"].item() == pytest.approx(kd.mean().item(), rel=1e-6)


def test_the_unlabelled_rows_label_slot_changes_nothing_and_alpha_zero_keeps_its_kd():
    with_mask, _ = shorthand_loss(STUDENT, TEACHER, torch.tensor([0, IGNORE_LABEL, 1]), 2.0, alpha=0.0)
    kd_row = (kl_divergence(STUDENT[1:2] / 2, TEACHER[1:2] / 2) * 4).item()
    ce = F.cross_entropy(STUDENT[[0, 2]], torch.tensor([0, 1]), reduction="none")
    assert with_mask.item() == pytest.approx((ce.sum().item() + kd_row) / 3, rel=1e-6)
    only_unlabelled, parts = shorthand_loss(STUDENT[1:2], TEACHER[1:2], torch.tensor([IGNORE_LABEL]), 2.0, alpha=0.5)
    assert only_unlabelled.item() == pytest.approx(kd_row, rel=1e-6) and "ce_loss" not in parts


def test_gold_batches_are_unchanged_by_the_mask():
    labels = torch.tensor([0, 1, 1])
    total, _ = shorthand_loss(STUDENT, TEACHER, labels, temperature=2.0, alpha=0.5)
    kd = (kl_divergence(STUDENT / 2, TEACHER / 2) * 4).mean()
    assert total.item() == pytest.approx(0.5 * kd.item() + 0.5 * F.cross_entropy(STUDENT, labels).item())


def test_at_alpha_zero_the_gold_rows_teacher_logits_are_never_read():
    """The gold rows' teacher logits may be placeholders at alpha 0 (they are not computed): any value,
    even a non-finite one, leaves the loss, its gradient and the logged KD term unchanged."""
    labels = torch.tensor([0, IGNORE_LABEL, 1])
    results = []
    for gold_rows in (torch.zeros(2, 2), torch.full((2, 2), float("inf"))):
        teacher = TEACHER.clone()
        teacher[[0, 2]] = gold_rows
        student = STUDENT.clone().requires_grad_(True)
        total, parts = shorthand_loss(student, teacher, labels, temperature=2.0, alpha=0.0)
        total.backward()
        results.append((total, parts, student.grad))
    (zeros, zero_parts, zeros_grad), (inf, _, inf_grad) = results
    assert torch.isfinite(inf) and inf.item() == pytest.approx(zeros.item(), rel=1e-6)
    assert torch.equal(zeros_grad, inf_grad) and torch.isfinite(inf_grad).all()
    kd_row = (kl_divergence(STUDENT[1:2] / 2, TEACHER[1:2] / 2) * 4).item()
    assert zero_parts["kl_loss"].item() == pytest.approx(kd_row, rel=1e-6)  # the mean over the one row KD weighs on
