"""The prompted LLM teacher on a tiny random Llama: label words scored by hand, the prompt cache against no
cache, calibration worked by hand, bad input in one line, and a run that distils with no gold label at all."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from conftest import PROJECT_ROOT, write_tiny_config
from llmneo.cli import app
from llmneo.data import LabeledTexts
from llmneo.modelfolder import load_tokenizer
from llmneo.teacher.prompted import (
    PromptedTeacher,
    contextual_offsets,
    fit_temperature_and_bias,
    pick_shots,
)

WORDS = [[" negative", " very negative"], [" positive"]]  # several words, one of two tokens


@pytest.fixture(scope="module")
def tiny_llm(tiny_llama_source):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(tiny_llama_source).eval(), load_tokenizer(tiny_llama_source)


def teacher(tiny_llm, shots=(), **options) -> PromptedTeacher:
    model, tokenizer = tiny_llm
    return PromptedTeacher(model, tokenizer, ["negative", "positive"], WORDS, "review {text}", "sentiment review",
                           " sentiment", shots=shots, **options)


def by_hand(model, tokenizer, prompt_ids: list[int], word: str) -> float:
    """log P(word | prompt): the full sequence through the model, no cache, the word's token log-probs summed."""
    word_ids = tokenizer(word, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt_ids + word_ids])
    with torch.no_grad():
        log_probs = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)
    return float(sum(log_probs[len(prompt_ids) - 1 + j, token] for j, token in enumerate(word_ids)))


def test_label_words_are_scored_as_whole_token_sequences_by_hand(tiny_llm):
    model, tokenizer = tiny_llm
    prompted = teacher(tiny_llm)
    text = "a fine film"
    prompt_ids = prompted.prefix_ids + prompted._text_ids(text)
    assert len(tokenizer(" very negative", add_special_tokens=False)["input_ids"]) == 2
    expected = [np.logaddexp(by_hand(model, tokenizer, prompt_ids, " negative"),
                             by_hand(model, tokenizer, prompt_ids, " very negative")),
                by_hand(model, tokenizer, prompt_ids, " positive")]
    np.testing.assert_allclose(prompted.raw_logits([text], use_cache=False)[0], expected, atol=1e-5)


def test_the_prompt_cache_gives_the_probabilities_of_no_cache(tiny_llm):
    texts = ["a fine film", "dull and long", "the best movie of the year , and a warm one", "bad"]
    shots = [("a great film", 1), ("a boring mess", 0)]
    prompted = teacher(tiny_llm, shots=shots)
    assert "a great film" in prompted.head and prompted.prefix_ids  # the shots sit in the cached head
    np.testing.assert_allclose(prompted.raw_logits(texts, batch_size=3, use_cache=True),
                               prompted.raw_logits(texts, batch_size=2, use_cache=False), atol=1e-4)


def test_contextual_calibration_by_hand():
    content_free = np.log(np.array([[0.8, 0.2], [0.6, 0.4]]))  # the prompt's own lean: 0.7 / 0.3 on average
    offsets = contextual_offsets(content_free)
    np.testing.assert_allclose(offsets, np.log([0.7, 0.3]), atol=1e-9)
    calibrated = np.log(np.array([[0.7, 0.3]])) - offsets  # a text the prompt sees as it sees nothing
    np.testing.assert_allclose(np.exp(calibrated) / np.exp(calibrated).sum(), [[0.5, 0.5]], atol=1e-9)


def test_the_fitted_bias_is_the_log_odds_of_the_labels_when_the_logits_say_nothing():
    labels = np.array([1] * 70 + [0] * 30)
    temperature, bias = fit_temperature_and_bias(labels, np.zeros((100, 2)))
    assert bias[0] == 0.0 and bias[1] == pytest.approx(np.log(70 / 30), abs=1e-3)
    assert 0.05 <= temperature <= 20


def test_bad_input_is_one_line(tiny_llm):
    with pytest.raises(ValueError, match=r"teacher.label_words: ' zzzqx' is not a whole token sequence"):
        PromptedTeacher(*tiny_llm, ["negative", "positive"], [[" negative"], [" zzzqx"]], "review {text}")
    labelled = LabeledTexts(["good", "bad", "fine"], [1, 0, 1], "tiny")
    with pytest.raises(ValueError, match=r"teacher.shots: 2 per class, but class 0 has 1 labelled rows"):
        pick_shots(labelled, 2, 2, seed=0)
    assert sorted(label for _, label in pick_shots(labelled, 1, 2, seed=0)) == [0, 1]


@pytest.mark.slow
def test_a_student_distils_a_prompted_teacher_with_no_gold_label(tmp_path, tiny_llama_source, tiny_bert_source,
                                                                 sst2_dir):
    """Zero gold labels: the two labelled rows are the prompt's shots only (their loss weight is 0); the student
    learns the calibrated soft labels on unlabelled text. The cache key holds the prompt recipe."""
    path = write_tiny_config(
        tmp_path, tiny_llama_source, tiny_bert_source, sst2_dir,
        data={"source": "glue_dir", "glue_dir": str(sst2_dir), "max_train_samples": 2, "max_eval_samples": 16},
        teacher={"kind": "verbalizer", "finetune": False, "template": "review {text}", "answer_prefix": " sentiment",
                 "label_words": [[" negative", " very negative"], " positive"], "shots": 1,
                 "calibration": "contextual", "max_length": 32},
        student={"name_or_path": str(tiny_bert_source), "max_length": 32, "lora": {"enabled": False},
                 "train": {"max_steps": 3, "batch_size": 8, "eval_steps": 3, "save_steps": 3}},
        augment={"enabled": True, "rest_of_train": True, "max_rows": 24},
        loss={"terms": {"kl": {"gold": 0, "unlabelled": 1}}})
    result = CliRunner().invoke(app, ["run", "--config", str(path)])
    assert result.exit_code == 0, result.output[-3000:]
    assert "prompted (1 shots per class, calibration contextual)" in result.output
    run_dir = tmp_path / "outputs" / "tiny"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["data"]["transfer"] == 24 and metrics["final"]["n"] == 16
    keys = [json.loads(p.read_text())["key"] for p in (tmp_path / "cache").glob("*/meta.json")]
    assert all(json.loads(key["template"])["shots"] == 1 for key in keys)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["teacher"]["n"] == 16 and summary["speedup"] > 0


@pytest.mark.slow
def test_the_gpu_recipe_runs_on_cpu_with_a_tiny_llama_in_place_of_the_8b_model(tmp_path, tiny_llama_source,
                                                                                tiny_bert_source, sst2_dir):
    """configs/llama3-8b-prompted.yaml as shipped (chat template, 4 shots per class, contextual calibration, no
    gold label), with only the models and the sizes swapped for ones that run here."""
    import shutil

    from transformers import AutoTokenizer

    llm = tmp_path / "tiny-instruct"
    shutil.copytree(tiny_llama_source, llm)
    tokenizer = AutoTokenizer.from_pretrained(llm)
    tokenizer.chat_template = ("{% for m in messages %}<{{ m['role'] }}> {{ m['content'] }}\n{% endfor %}"
                               "{% if add_generation_prompt %}<assistant>{% endif %}")
    tokenizer.save_pretrained(llm)
    overrides = [f"teacher.name_or_path={llm}", "teacher.load_in_4bit=false", "teacher.dtype=fp32",
                 f"student.name_or_path={tiny_bert_source}", f"data.glue_dir={sst2_dir}", "data.max_eval_samples=16",
                 "augment.max_rows=24", "student.train.max_steps=2", "student.train.batch_size=8",
                 "student.train.mixed_precision=no", f"output_dir={tmp_path / 'outputs'}",
                 f"cache.dir={tmp_path / 'cache'}", "tracking.enabled=false"]
    config = PROJECT_ROOT / "configs" / "llama3-8b-prompted.yaml"
    result = CliRunner().invoke(app, ["run", "--config", str(config), *[f"--set={item}" for item in overrides]])
    assert result.exit_code == 0, result.output[-3000:]
    assert "prompted (4 shots per class, calibration contextual)" in result.output
    metrics = json.loads((tmp_path / "outputs" / "llama3-8b-prompted" / "metrics.json").read_text())
    assert metrics["data"]["transfer"] == 24
