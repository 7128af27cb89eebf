"""A loss term of one's own: one module and one config entry, no change to llmneo.

The toy term here pulls the student's logits towards zero (a logit penalty). Its module defines a
`LossTerm` subclass; `loss.modules` names the module and `loss.terms` weighs the term; the trainer logs
it as `toy_loss` like any built-in term, knowing nothing of it.
"""

from __future__ import annotations

import json
import textwrap

import pytest
import torch

from conftest import write_tiny_config
from llmneo.cache.stage import run_cache_stage
from llmneo.config import load_config
from llmneo.distill.stage import run_distill_stage
from llmneo.losses import LossInputs, build_loss, term_classes
from llmneo.teacher.tune import run_teacher_stage

TOY_TERM = textwrap.dedent('''
    """A toy loss term: the squared logits' mean, per row."""
    import torch

    from llmneo.losses import LossTerm


    class LogitPenalty(LossTerm):
        name = "toy"

        def rows(self, inputs, active):
            return inputs.student_logits.float().pow(2).mean(-1) * active
''')


@pytest.fixture
def toy_module(tmp_path, monkeypatch):
    (tmp_path / "toy_term.py").write_text(TOY_TERM)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "toy_term"


def test_a_term_in_a_named_module_is_found_and_weighed_like_the_built_in_ones(toy_module):
    assert "toy" in term_classes([toy_module]) and "toy" not in term_classes()
    loss = build_loss({"ce": {"gold": 1.0}, "toy": {"gold": 0.5, "unlabelled": 0.5}}, 2.0, [toy_module])
    logits = torch.tensor([[2.0, 0.0], [1.0, -1.0]])
    labels = torch.tensor([0, 1])
    total, parts = loss(LossInputs(logits, labels))
    ce = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    penalty = logits.pow(2).mean(-1)
    assert total.item() == pytest.approx((ce + 0.5 * penalty).mean().item(), rel=1e-6)
    assert parts["toy_loss"].item() == pytest.approx(penalty.mean().item(), rel=1e-6)
    with pytest.raises(ValueError, match="loss.modules: cannot import 'no_such_module'"):
        term_classes(["no_such_module"])


@pytest.mark.slow
def test_a_student_trains_with_the_toy_term_from_the_config_alone(toy_module, tmp_path, tiny_bert_source, sst2_dir):
    path = write_tiny_config(tmp_path, tiny_bert_source, tiny_bert_source, sst2_dir,
                             teacher={"train": {"max_steps": 1, "eval_steps": 1}},
                             student={"lora": {"enabled": False},
                                      "train": {"max_steps": 4, "eval_steps": 2, "save_steps": 2, "logging_steps": 1}},
                             loss={"modules": [toy_module], "terms": {"kl": {"gold": 0.5}, "ce": {"gold": 0.5},
                                                                      "toy": {"gold": 0.1}}})
    config = load_config(path)
    run_teacher_stage(config)
    run_cache_stage(config)
    outcome = run_distill_stage(config)
    history = json.loads((outcome.model_dir / "train_history.json").read_text())
    logged = [entry for entry in history if "toy_loss" in entry]
    assert logged and all(entry["toy_loss"] >= 0 for entry in logged) and all("kl_loss" in e for e in logged)
    meta = json.loads((outcome.model_dir / "llmneo_model.json").read_text())
    assert meta["loss"]["terms"]["toy"] == {"gold": 0.1, "unlabelled": 0.0}
