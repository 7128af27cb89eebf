"""The divergence terms and Hinton's loss (the shorthand) against values worked by hand."""

import math

import pytest
import torch

from conftest import shorthand_loss
from llmneo.losses import build_loss
from llmneo.losses.js import js_divergence
from llmneo.losses.kl import kl_divergence
from llmneo.losses.reverse_kl import reverse_kl_divergence


def test_zero_divergence_for_identical_logits():
    logits = torch.tensor([[1.0, -2.0], [0.3, 0.1]])
    for divergence in (kl_divergence, reverse_kl_divergence, js_divergence):
        per_row = divergence(logits, logits)  # (B,): one divergence per row
        assert per_row.shape == (2,) and per_row.abs().max().item() == pytest.approx(0.0, abs=1e-7)


def test_kl_matches_hand_computation_with_t_squared_scaling():
    student, teacher = torch.tensor([[0.0, 0.0]]), torch.tensor([[math.log(3.0), 0.0]])  # teacher p = (3/4, 1/4)
    labels = torch.tensor([0])
    # At T=1: KL((3/4,1/4) || (1/2,1/2)) = 3/4 ln(3/2) + 1/4 ln(1/2)
    kl_t1 = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    _, parts = shorthand_loss(student, teacher, labels, temperature=1.0, alpha=1.0)
    assert parts["kl_loss"].item() == pytest.approx(kl_t1, rel=1e-5)
    # At T=2 the teacher softens to p ∝ (sqrt 3, 1); the divergence is scaled by T^2 = 4.
    p = torch.tensor([math.sqrt(3.0), 1.0]) / (math.sqrt(3.0) + 1)
    kl_t2 = float((p * torch.log(p / 0.5)).sum())
    _, parts = shorthand_loss(student, teacher, labels, temperature=2.0, alpha=1.0)
    assert parts["kl_loss"].item() == pytest.approx(4 * kl_t2, rel=1e-5)


def test_alpha_ends_select_pure_kd_and_pure_ce():
    student = torch.tensor([[2.0, -1.0], [0.5, 0.7]])
    teacher = torch.tensor([[-1.0, 1.0], [3.0, 0.0]])
    labels = torch.tensor([0, 1])
    ce = torch.nn.functional.cross_entropy(student, labels).item()
    only_ce, _ = shorthand_loss(student, teacher, labels, temperature=2.0, alpha=0.0)
    only_kd, kd_parts = shorthand_loss(student, teacher, labels, temperature=2.0, alpha=1.0)
    assert only_ce.item() == pytest.approx(ce)
    assert only_kd.item() == pytest.approx(kd_parts["kl_loss"].item())
    half, _ = shorthand_loss(student, teacher, labels, temperature=2.0, alpha=0.5)
    assert half.item() == pytest.approx(0.5 * kd_parts["kl_loss"].item() + 0.5 * ce)


def test_reverse_kl_and_js_by_hand():
    student, teacher = torch.tensor([[0.0, 0.0]]), torch.tensor([[math.log(3.0), 0.0]])
    reverse = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    assert reverse_kl_divergence(student, teacher).item() == pytest.approx(reverse, rel=1e-5)
    m = (0.625, 0.375)
    js = 0.5 * (0.5 * math.log(0.5 / m[0]) + 0.5 * math.log(0.5 / m[1])) + 0.5 * (
        0.75 * math.log(0.75 / m[0]) + 0.25 * math.log(0.25 / m[1]))
    assert js_divergence(student, teacher).item() == pytest.approx(js, rel=1e-5)
    assert js_divergence(torch.tensor([[50.0, -50.0]]), torch.tensor([[-50.0, 50.0]])).item() <= math.log(2) + 1e-6


def test_an_unknown_term_is_refused_naming_the_key_and_the_terms_there_are():
    with pytest.raises(ValueError, match=r"loss.terms.wasserstein: no such loss term \(available: ce, hidden, js, kl, "
                                         r"reverse_kl"):
        build_loss({"wasserstein": {"gold": 1.0}}, 2.0)
    with pytest.raises(ValueError, match=r"loss.terms.kl.layers: unknown key"):
        build_loss({"kl": {"gold": 1.0, "layers": [1]}}, 2.0)
