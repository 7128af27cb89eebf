"""The reference recipe's student path on a tiny random Llama: a sequence classifier distilled with LoRA
r=4 / alpha 8 from cached logits, its score head trained in full, merged on save, exported to ONNX in
agreement with PyTorch, and served over /predict. The real SmolLM2-135M runs the same code."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import set_seed

from conftest import write_tiny_config
from llmneo.cache.stage import run_cache_stage
from llmneo.config import load_config
from llmneo.distill.stage import run_distill_stage, student_model_config
from llmneo.inference import Predictor
from llmneo.inference.export import export_model
from llmneo.serve.app import create_app
from llmneo.serve.launch import serve_in_thread
from llmneo.serve.settings import ServeSettings
from llmneo.teacher.tune import run_teacher_stage
from llmneo.training.models import build_model

TEXTS = ["a fine , moving film", "dull", "the plot is a mess and the acting is worse than the script"]


@pytest.mark.slow
def test_a_llama_student_distils_with_lora_merges_exports_and_serves(tmp_path, tiny_bert_source,
                                                                      tiny_llama_source, sst2_dir):
    train = {"epochs": 1, "batch_size": 16, "eval_batch_size": 32, "learning_rate": 5e-3, "eval_steps": 2,
             "logging_steps": 1, "save_steps": 2}
    config = load_config(write_tiny_config(tmp_path, tiny_bert_source, tiny_llama_source, sst2_dir, student={
        "name_or_path": str(tiny_llama_source), "kind": "classifier", "keep_layers": None, "max_length": 32,
        "lora": {"r": 4, "alpha": 8, "dropout": 0.05}, "train": train}))
    run_teacher_stage(config)
    run_cache_stage(config)
    outcome = run_distill_stage(config)

    set_seed(config.student.train.seed)  # the student as it started: same seed, same head
    initial = build_model(student_model_config(config), config.data.labels).model.state_dict()
    layers, hidden = 3, 32
    lora = layers * 4 * (hidden + hidden) + layers * 4 * (hidden + 16)  # q_proj 32->32, v_proj 32->16, r=4
    assert outcome.parameters["trainable"] == lora + hidden * 2  # the adapters, and the score head in full

    folder = config.run_dir / "student"
    saved = load_file(folder / "model.safetensors")
    assert not any("lora" in key for key in saved)  # merged on save: a plain Llama classifier
    assert not torch.equal(saved["score.weight"], initial["score.weight"])
    assert not torch.equal(saved["model.layers.0.self_attn.q_proj.weight"],
                           initial["model.layers.0.self_attn.q_proj.weight"])
    torch.testing.assert_close(saved["model.layers.0.self_attn.k_proj.weight"],
                               initial["model.layers.0.self_attn.k_proj.weight"])  # not adapted: untouched

    predictor = Predictor.load(folder)
    assert predictor.tokenizer.pad_token_id is not None
    together = predictor.predict_logits(TEXTS, batch_size=3)  # right-padded: the score is read at the last word
    alone = np.concatenate([predictor.predict_logits([text]) for text in TEXTS])
    np.testing.assert_allclose(together, alone, atol=1e-4)

    report = export_model(config.run_dir, quantize="none", data_path=sst2_dir / "dev.tsv", max_examples=64,
                          min_agreement=0.99)
    assert report.agreement >= 0.99 and report.n_examples == 64
    with serve_in_thread(create_app(ServeSettings(model=report.folder, backend="onnx"))) as url:
        body = httpx.post(f"{url}/predict", json={"texts": TEXTS}, timeout=60).json()
    expected = predictor.predict(TEXTS)
    assert [r["label"] for r in body["results"]] == [p.label for p in expected]
    np.testing.assert_allclose([r["probs"] for r in body["results"]], [p.probs for p in expected], atol=1e-4)
