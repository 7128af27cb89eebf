"""The intermediate-layer term: mean pooling that ignores padding, and Patient KD's normalised distance."""

import torch

from llmneo.losses.hidden import hidden_state_distance, mean_pool


def hidden_state_loss(student, teacher):
    """The term averaged over rows, as the loss weighs it at weight 1 on every row."""
    return hidden_state_distance(student, teacher).mean()


def test_mean_pool_weighs_real_tokens_only():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])  # (B=1, T=3, H=2), last token is padding
    mask = torch.tensor([[1, 1, 0]])
    torch.testing.assert_close(mean_pool(hidden, mask), torch.tensor([[2.0, 3.0]]))


def test_identical_states_cost_nothing_and_scale_is_ignored():
    states = torch.randn(4, 3, 8)  # (B, L, H)
    assert hidden_state_loss(states, states).item() == 0.0
    assert hidden_state_loss(5 * states, states).item() < 1e-10  # normalised first: blind to a layer's scale


def test_the_term_worked_by_hand():
    student = torch.tensor([[[1.0, 0.0]]])  # (1, 1, 2)
    teacher = torch.tensor([[[0.0, 2.0]]])
    # unit vectors (1, 0) and (0, 1): squared distance 2
    assert hidden_state_loss(student, teacher).item() == 2.0
    opposite = torch.tensor([[[-3.0, 0.0]]])
    assert hidden_state_loss(student, opposite).item() == 4.0  # the largest it can be


def test_gradients_flow_to_the_student_states_only():
    student = torch.randn(2, 2, 4, requires_grad=True)
    teacher = torch.randn(2, 2, 4)
    hidden_state_loss(student, teacher).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
