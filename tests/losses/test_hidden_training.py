"""The intermediate-layer term on tiny models: layer pairing, the projection, and a run that trains with it."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import tiny_bert, write_tiny_config
from llmneo import cache
from llmneo.cache.stage import run_cache_stage
from llmneo.config import load_config
from llmneo.distill.stage import run_distill_stage
from llmneo.losses import TeacherSignal
from llmneo.losses.hidden import HiddenProjection, hidden_state_distance, pooled_states, teacher_layers_for
from llmneo.teacher.tune import run_teacher_stage
from llmneo.training.stage import run_splits as student_splits


def hidden_state_loss(student, teacher):
    return hidden_state_distance(student, teacher).mean()


def test_layers_pair_as_configured_cut_or_evenly_spaced():
    assert teacher_layers_for(3, 12, None, [0, 6, 11]) == [0, 6, 11]  # cut from the teacher: its own layers
    assert teacher_layers_for(3, 12, None, None) == [3, 7, 11]  # Patient KD's skip scheme, last on last
    assert teacher_layers_for(2, 6, [1, 4], [0, 5]) == [1, 4]  # loss.hidden_layers wins
    with pytest.raises(ValueError, match="loss.hidden_layers has 1 entries; the student has 2"):
        teacher_layers_for(2, 6, [1], None)
    with pytest.raises(ValueError, match=r"loss.hidden_layers: \[6\] outside the teacher's layers 0..5"):
        teacher_layers_for(2, 6, [1, 6], None)


def test_identical_hidden_states_through_the_identity_projection_cost_nothing():
    model = tiny_bert(layers=2).eval()
    inputs = {"input_ids": torch.tensor([[101, 2204, 3185, 102, 0]]), "attention_mask": torch.tensor([[1, 1, 1, 1, 0]])}
    with torch.no_grad():
        outputs = model(**inputs, output_hidden_states=True)
    states = pooled_states(outputs.hidden_states, inputs["attention_mask"], [0, 1])  # (1, 2, 32)
    projection = HiddenProjection(2, 32, 32)  # equal widths: starts as the identity
    assert hidden_state_loss(projection(states), states).item() < 1e-10


def test_gradients_reach_the_projection_across_widths():
    student_states = torch.randn(4, 2, 16)  # (B, L, H_student)
    teacher_states = torch.randn(4, 2, 32)  # (B, L, H_teacher)
    projection = HiddenProjection(2, 16, 32)
    hidden_state_loss(projection(student_states), teacher_states).backward()
    for linear in projection.maps:
        assert linear.weight.grad is not None and linear.weight.grad.abs().sum() > 0


@pytest.mark.slow
def test_a_student_trains_with_the_intermediate_term_from_cached_teacher_states(tmp_path, tiny_bert_source,
                                                                               sst2_dir, monkeypatch):
    """A 2-layer student of a 4-layer teacher: the term is logged, the teacher's pooled states are cached
    (and reused: the teacher is not loaded again), and the saved student holds no projection."""
    path = write_tiny_config(tmp_path, tiny_bert_source, "run:teacher", sst2_dir,
                             teacher={"train": {"max_steps": 2, "batch_size": 8, "eval_steps": 2, "save_steps": 2}},
                             student={"keep_layers": [0, 3], "lora": {"enabled": False}},
                             loss={"hidden_weight": 1.0})
    config = load_config(path)
    run_teacher_stage(config)
    run_cache_stage(config)
    outcome = run_distill_stage(config)
    history = json.loads((outcome.model_dir / "train_history.json").read_text())
    hidden = [entry["hidden_loss"] for entry in history if "hidden_loss" in entry]
    assert hidden and all(0 <= value <= 4 for value in hidden)
    state = load_file(str(outcome.model_dir / "model.safetensors"))
    assert not any("maps." in name for name in state)  # the projection is a training device, not the model
    cached = sorted(p for p in (tmp_path / "cache").iterdir()
                    if p.is_dir() and "hidden_layers" in (p / "meta.json").read_text())
    assert len(cached) == 1
    assert json.loads((cached[0] / "meta.json").read_text())["hidden_layers"] == [0, 3]

    def unloadable(*_args, **_kwargs):
        raise AssertionError("the teacher was loaded although its hidden states are cached")
    monkeypatch.setattr(cache.stage, "load_live_teacher", unloadable)
    again = cache.stage.teacher_pooled_signal(config, student_splits(config), TeacherSignal("pooled_hidden", (0, 3)))
    assert again.shape == (64, 2 * 32) and np.isfinite(again).all()
