"""Both head kinds on tiny models, LoRA on and off, layer subsets, and the saved folder round trip."""

import numpy as np
import pytest
import torch

from conftest import minilm_tokenizer, tiny_mpnet
from llmneo.config import LoraSettings, ModelConfig
from llmneo.inference import Predictor
from llmneo.maths.params import count_parameters
from llmneo.modelfolder import read_model_meta
from llmneo.modelfolder.weights import save_model_folder
from llmneo.training.models import apply_lora, build_model, freeze, narrow_ffn

LABELS = ["negative", "positive"]
TEXTS = ["a fine film", "a dull , lifeless mess", "not bad at all"]


def test_bert_classifier_with_lora_trains_only_adapters_and_head(tiny_bert_source):
    loaded = build_model(ModelConfig(name_or_path=str(tiny_bert_source)), LABELS)
    total = count_parameters(loaded.model)["total"]
    apply_lora(loaded, LoraSettings(r=4, alpha=8))
    counts = count_parameters(loaded.model)
    trainable = [name for name, p in loaded.model.named_parameters() if p.requires_grad]
    assert all("lora_" in name or "classifier" in name for name in trainable)
    assert any("query" in name for name in trainable) and any("value" in name for name in trainable)
    assert 0 < counts["trainable"] < 0.2 * total


def test_keep_layers_makes_a_smaller_student(tiny_bert_source):
    full = build_model(ModelConfig(name_or_path=str(tiny_bert_source)), LABELS)
    cut = build_model(ModelConfig(name_or_path=str(tiny_bert_source), keep_layers=[0, 3]), LABELS)
    assert len(cut.model.bert.encoder.layer) == 2 and cut.model.config.num_hidden_layers == 2
    assert count_parameters(cut.model)["total"] < count_parameters(full.model)["total"]
    with pytest.raises(ValueError, match="only 4 layers"):
        build_model(ModelConfig(name_or_path=str(tiny_bert_source), keep_layers=[0, 9]), LABELS)


def _silence_half_the_ffn_units(model, out_path: str) -> None:
    """Zero the output weights of the even feed-forward units: they contribute nothing, so pruning them
    must leave the model's function unchanged, and they are the weakest by construction."""
    for layer in model.base_model.layers if hasattr(model.base_model, "layers") else model.base_model.encoder.layer:
        with torch.no_grad():
            layer.get_submodule(out_path).weight[:, ::2] = 0


@pytest.fixture(scope="module")
def tiny_mpnet_source(tmp_path_factory):
    """A plain folder holding a 4-layer tiny MPNet (best-cpu's student is an MPNet cut) and its tokenizer."""
    folder = tmp_path_factory.mktemp("tiny-mpnet-source")
    tiny_mpnet().mpnet.save_pretrained(folder)
    minilm_tokenizer().save_pretrained(folder)
    return folder


@pytest.mark.parametrize("family, out_path", [("bert", "output.dense"), ("mpnet", "output.dense"),
                                              ("llama", "mlp.down_proj")])
def test_narrow_ffn_prunes_the_weakest_units_and_keeps_the_function(
        tiny_bert_source, tiny_mpnet_source, tiny_llama_source, tmp_path, family, out_path):
    source = {"bert": tiny_bert_source, "mpnet": tiny_mpnet_source, "llama": tiny_llama_source}[family]
    loaded = build_model(ModelConfig(name_or_path=str(source), keep_layers=[0, 2]), LABELS)
    _silence_half_the_ffn_units(loaded.model, out_path)
    meta = {"labels": LABELS, "max_length": 32, "kind": "classifier", "lora": {"enabled": False}}
    before = Predictor.from_model(loaded.model.eval(), loaded.tokenizer, meta).predict_logits(TEXTS)
    full = count_parameters(loaded.model)["total"]

    narrow_ffn(loaded.model, 32)

    assert loaded.model.config.intermediate_size == 32
    layer = loaded.model.base_model.layers[1] if family == "llama" else loaded.model.base_model.encoder.layer[1]
    assert layer.get_submodule(out_path).weight.shape[1] == 32
    assert torch.count_nonzero(layer.get_submodule(out_path).weight.abs().sum(dim=0)) == 32  # only live units kept
    assert count_parameters(loaded.model)["total"] < full
    after = Predictor.from_model(loaded.model.eval(), loaded.tokenizer, meta).predict_logits(TEXTS)
    np.testing.assert_allclose(after, before, atol=1e-5)
    folder = save_model_folder(loaded, tmp_path / "narrow", meta, merge=True)  # a plain, narrower model
    np.testing.assert_allclose(Predictor.load(folder).predict_logits(TEXTS), before, atol=1e-5)


def test_ffn_width_from_the_config_and_its_bounds(tiny_bert_source):
    cut = build_model(ModelConfig(name_or_path=str(tiny_bert_source), keep_layers=[0, 3], ffn_width=16), LABELS)
    assert [layer.intermediate.dense.out_features for layer in cut.model.bert.encoder.layer] == [16, 16]
    with pytest.raises(ValueError, match="ffn_width 64: layer 0 has 64 feed-forward units"):
        build_model(ModelConfig(name_or_path=str(tiny_bert_source), ffn_width=64), LABELS)


def test_freeze_leaves_the_top_layers_and_the_adapters_above_them_training(tiny_bert_source):
    loaded = build_model(ModelConfig(name_or_path=str(tiny_bert_source)), LABELS)
    apply_lora(loaded, LoraSettings(r=2, alpha=4))
    freeze(loaded.model, embeddings=True, first_layers=3)
    trainable = [name for name, p in loaded.model.named_parameters() if p.requires_grad]
    assert trainable and not any(f"layer.{i}." in name for name in trainable for i in range(3))
    assert any("layer.3." in name and "lora_" in name for name in trainable)
    with pytest.raises(ValueError, match="freeze_layers 4: the model has only 4 layers"):
        freeze(loaded.model, embeddings=False, first_layers=4)


def test_llama_as_sequence_classifier_pads_correctly(tiny_llama_source):
    loaded = build_model(ModelConfig(name_or_path=str(tiny_llama_source)), LABELS)
    assert loaded.model.config.pad_token_id == loaded.tokenizer.pad_token_id
    batch = loaded.tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.inference_mode():
        together = loaded.model(**batch).logits
        alone = torch.cat([loaded.model(**loaded.tokenizer([t], return_tensors="pt")).logits for t in TEXTS])
    torch.testing.assert_close(together, alone, atol=1e-4, rtol=1e-4)


def test_llama_verbalizer_reads_label_word_logits(tiny_llama_source):
    cfg = ModelConfig(name_or_path=str(tiny_llama_source), kind="verbalizer", template="review {text} sentiment")
    loaded = build_model(cfg, LABELS)
    ids = [loaded.tokenizer.convert_tokens_to_ids(w) for w in LABELS]
    assert loaded.label_token_ids == ids
    text = "review a fine film sentiment"
    batch = loaded.tokenizer([text], return_tensors="pt")
    with torch.inference_mode():
        class_logits = loaded.model(**batch).logits  # (1, 2)
        lm_logits = loaded.model.lm(**batch).logits[0, -1, ids]  # next-token logits of the label words
    torch.testing.assert_close(class_logits[0], lm_logits, atol=1e-5, rtol=1e-5)
    apply_lora(loaded, LoraSettings(r=2, alpha=4))
    trainable = [n for n, p in loaded.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable) and any("q_proj" in n for n in trainable)


@pytest.mark.parametrize("kind", ["classifier", "verbalizer"])
@pytest.mark.parametrize("lora, merge", [(True, True), (True, False), (False, True)])
def test_saved_folder_predicts_like_the_live_model(tiny_llama_source, tmp_path, kind, lora, merge):
    cfg = ModelConfig(name_or_path=str(tiny_llama_source), kind=kind, template="review {text} sentiment",
                      keep_layers=[0, 2])
    loaded = build_model(cfg, LABELS)
    if lora:
        apply_lora(loaded, LoraSettings(r=2, alpha=4))
        for name, param in loaded.model.named_parameters():  # make the adapters matter
            if "lora_B" in name:
                torch.nn.init.normal_(param, std=0.5)
    meta = {"labels": LABELS, "template": cfg.template, "max_length": 32, "lora": {"enabled": lora}}
    live = Predictor.from_model(loaded.model.eval(), loaded.tokenizer, {**meta, "kind": kind}).predict_logits(TEXTS)
    folder = save_model_folder(loaded, tmp_path / "m", meta, merge=merge)
    assert (folder / "adapter").is_dir() == lora and read_model_meta(folder)["kind"] == kind
    if lora:  # merged or not, the folder's own weights are plain: no LoRA keys
        from safetensors.torch import load_file
        assert not any("lora" in key for key in load_file(folder / "model.safetensors"))
    saved = Predictor.load(folder).predict_logits(TEXTS)
    np.testing.assert_allclose(saved, live, atol=1e-4)


def test_missing_package_and_bad_label_word(tiny_llama_source):
    with pytest.raises(FileNotFoundError, match="not installed"):
        build_model(ModelConfig(name_or_path="pkg:no_such_package_here"), LABELS)
    cfg = ModelConfig(name_or_path=str(tiny_llama_source), kind="verbalizer", label_words=["notaword1", "positive"])
    with pytest.raises(ValueError, match="label word"):
        build_model(cfg, LABELS)
