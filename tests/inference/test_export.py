"""ONNX export: fp32 round trip, int8, refusal leaves nothing behind, both backends agree, the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from typer.testing import CliRunner

from conftest import minilm_tokenizer, tiny_bert, tiny_mpnet
from llmneo.cli import app
from llmneo.inference import Predictor
from llmneo.inference.export import ExportError, ExportRefused, agreement_report, export_model
from llmneo.modelfolder import read_model_meta
from llmneo.modelfolder.weights import LoadedModel, save_model_folder

TEXTS = ["a long sentence that goes on and on about the film and its many flaws", "ok", "bad",
         "a fine film indeed", "the worst thing i have seen this year", "lovely"]


@pytest.fixture(scope="module")
def fp32_export(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("exports") / "onnx-fp32"
    return export_model(tiny_model_dir, out_dir=out, max_examples=96)


def test_fp32_round_trip_agrees_fully_and_writes_an_onnx_model_folder(fp32_export, tiny_model_dir):
    assert fp32_export.agreement == 1.0 and fp32_export.n_examples == 96
    assert fp32_export.max_prob_diff < 1e-5
    folder = fp32_export.folder
    meta = read_model_meta(folder)
    source = read_model_meta(tiny_model_dir)
    assert (meta["backend"], meta["onnx_file"], meta["quantization"]) == ("onnx", "model.onnx", "none")
    assert meta["labels"] == source["labels"] and meta["calibration"] == source["calibration"]
    assert meta["export"]["agreement"] == 1.0 and meta["export"]["n_examples"] == 96
    assert [p.name for p in Path(folder).parent.iterdir()] == ["onnx-fp32"]  # no staging folder left
    predictor = Predictor.load(folder)
    assert predictor.backend_name == "onnx" and predictor.device == "cpu"


def test_both_backends_give_the_same_labels_in_the_callers_order(fp32_export, tiny_model_dir):
    torch_predictor = Predictor.load(tiny_model_dir, backend="torch")
    onnx_predictor = Predictor.load(fp32_export.folder, backend="onnx", num_threads=1)
    torch_logits = torch_predictor.predict_logits(TEXTS, batch_size=4)
    onnx_logits = onnx_predictor.predict_logits(TEXTS, batch_size=4)
    np.testing.assert_allclose(onnx_logits, torch_logits, atol=1e-5)
    assert [p.label for p in onnx_predictor.predict(TEXTS)] == [p.label for p in torch_predictor.predict(TEXTS)]
    alone = np.stack([onnx_predictor.predict_logits([text])[0] for text in TEXTS])
    np.testing.assert_allclose(onnx_logits, alone, atol=1e-5)  # batching and sorting are invisible
    np.testing.assert_allclose(onnx_predictor.predict_logits(TEXTS[::-1], batch_size=5)[::-1], onnx_logits,
                               atol=1e-5)


def test_int8_export_is_smaller_and_still_loads_and_predicts(fp32_export, tiny_model_dir, tmp_path):
    report = export_model(tiny_model_dir, quantize="int8", out_dir=tmp_path / "onnx-int8", max_examples=96,
                          min_agreement=0.9)
    assert report.size_bytes < fp32_export.size_bytes
    graph = onnx.load(str(tmp_path / "onnx-int8" / "model.onnx")).graph
    int8_weights = [t for t in graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 2]
    assert len(int8_weights) >= 2 * 6  # every linear layer of the 2 encoder layers, at least
    assert report.fp32_matmuls == 0  # it passed in full int8: nothing was kept in fp32
    quantized = {node.name for node in graph.node if node.op_type == "MatMulInteger"}
    assert any("layer.1/output/dense" in name for name in quantized) and any("query" in name for name in quantized)
    assert not (tmp_path / "onnx-int8" / "fp32-source").exists()
    assert report.agreement >= 0.9 and 0 < report.max_prob_diff < 0.05
    assert read_model_meta(tmp_path / "onnx-int8")["quantization"] == "int8"
    predictions = Predictor.load(tmp_path / "onnx-int8").predict(TEXTS, calibrate=True)
    assert len(predictions) == len(TEXTS)
    assert all(abs(sum(p.probs) - 1) < 1e-5 and p.label in ("negative", "positive") for p in predictions)


def _outlier_student(folder, texts):
    """A student with one hidden dimension 1000x the rest (as real LLMs have) that the pooler ignores.

    PyTorch is unaffected, but int8 quantises each activation tensor with one scale, so the outlier
    sets the step and the other dimensions round to zero: labels flip for about half the texts.
    """
    model = tiny_bert().eval()
    tokenizer = minilm_tokenizer()
    with torch.no_grad():
        model.bert.encoder.layer[-1].output.LayerNorm.weight[0] = 1000.0
        model.bert.pooler.dense.weight[:, 0] = 0.0
        margin = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits.diff(dim=1).squeeze(1)
        model.classifier.bias[1] -= margin.median()  # half the texts each side of the boundary
    save_model_folder(LoadedModel(model, tokenizer, "classifier"), folder, {"role": "student",
                      "labels": ["negative", "positive"], "max_length": 64})
    return folder


def test_int8_with_feed_forward_outputs_kept_leaves_exactly_those_in_fp32(fp32_export, tmp_path):
    """The retry's graph (`_quantize_int8(keep_ffn_outputs=True)`): one fp32 feed-forward output
    projection per layer, every other linear layer int8."""
    from llmneo.inference.export import _quantize_int8

    source = Path(fp32_export.folder) / "model.onnx"
    shutil.copy2(source, tmp_path / "fp32.onnx")
    assert _quantize_int8(tmp_path / "fp32.onnx", tmp_path / "int8.onnx", keep_ffn_outputs=True) == 2
    graph = onnx.load(str(tmp_path / "int8.onnx")).graph
    fp32_linear = {node.name for node in graph.node if node.op_type == "MatMul" and "/dense/" in node.name}
    assert fp32_linear == {f"/model/bert/encoder/layer.{i}/output/dense/MatMul" for i in range(2)}
    quantized = {node.name for node in graph.node if node.op_type == "MatMulInteger"}
    assert any("intermediate/dense" in name for name in quantized) and any("query" in name for name in quantized)


def test_an_export_below_the_agreement_threshold_is_refused_and_nothing_is_written(tmp_path, sst2_dir, capsys):
    texts = [line.split("\t")[0] for line in (sst2_dir / "dev.tsv").read_text().splitlines()[1:65]]
    student = _outlier_student(tmp_path / "run" / "student", texts)
    target = tmp_path / "run" / "export" / "onnx-int8"
    target.mkdir(parents=True)
    (target / "marker").write_text("an older export")
    with pytest.raises(ExportRefused, match="agreement") as refused:
        export_model(tmp_path / "run", quantize="int8", max_examples=64)
    assert refused.value.report.agreement < 0.99
    assert refused.value.report.fp32_matmuls == 2  # full int8 was refused, and so was the retry
    assert "again with the feed-forward output projections in fp32" in capsys.readouterr().out
    assert sorted(p.name for p in target.parent.iterdir()) == ["onnx-int8"]  # no staging folder left
    assert (target / "marker").read_text() == "an older export"  # the previous export is untouched
    assert student.is_dir()


def test_agreement_report_and_argument_errors(tiny_model_dir, tmp_path):
    reference = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 1.1]])
    exported = np.array([[2.0, 0.0], [0.0, 1.0], [1.2, 1.0]])
    stats = agreement_report(reference, exported)
    assert stats["agreement"] == pytest.approx(2 / 3)
    assert stats["max_prob_diff"] == pytest.approx(abs(1 / (1 + np.exp(0.1)) - 1 / (1 + np.exp(-0.2))))
    with pytest.raises(ValueError, match="shapes differ"):
        agreement_report(reference, exported[:2])
    with pytest.raises(ExportError, match="quantize"):
        export_model(tiny_model_dir, quantize="int4", out_dir=tmp_path / "x")
    with pytest.raises(ExportError, match="min_agreement"):
        export_model(tiny_model_dir, min_agreement=1.5, out_dir=tmp_path / "x")
    with pytest.raises(FileNotFoundError, match="llmneo_model.json"):
        export_model(tmp_path, out_dir=tmp_path / "x")


def test_export_command_writes_the_run_folders_export(tiny_model_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_model_dir, run / "student")
    result = CliRunner().invoke(app, ["export", str(run), "--format", "onnx", "--max-examples", "32"])
    assert result.exit_code == 0, result.output
    assert "label agreement 1.0000" in result.output and "exported to" in result.output
    meta = json.loads((run / "export" / "onnx-fp32" / "llmneo_model.json").read_text())
    assert meta["backend"] == "onnx" and meta["export"]["n_examples"] == 32
    refused = CliRunner().invoke(app, ["export", str(run / "export" / "onnx-fp32")])
    assert refused.exit_code == 2 and "already an exported" in refused.output
    bad = CliRunner().invoke(app, ["export", str(run), "--format", "tflite"])
    assert bad.exit_code == 2 and "only onnx" in bad.output


def test_a_verbalizer_exports_to_the_same_signature_and_agrees(tiny_llama_source, tmp_path):
    from llmneo.config import ModelConfig
    from llmneo.training.models import build_model

    loaded = build_model(ModelConfig(name_or_path=str(tiny_llama_source), kind="verbalizer",
                                     label_words=["negative", "positive"]), ["negative", "positive"])
    student = save_model_folder(loaded, tmp_path / "student", {
        "role": "student", "labels": ["negative", "positive"], "max_length": 64,
        "template": "Review: {text}\nSentiment:"})
    report = export_model(student, out_dir=tmp_path / "onnx", max_examples=48)
    assert report.agreement == 1.0 and report.max_prob_diff < 1e-5
    graph = onnx.load(str(tmp_path / "onnx" / "model.onnx")).graph
    assert [i.name for i in graph.input] == ["input_ids", "attention_mask"] and graph.output[0].name == "logits"
    exported = Predictor.load(tmp_path / "onnx").predict_logits(TEXTS, batch_size=4)  # padded batches
    np.testing.assert_allclose(exported, Predictor.load(student).predict_logits(TEXTS), atol=1e-5)


def test_an_unmerged_lora_folder_is_merged_before_export(tmp_path):
    """Base weights in the folder and the adapter in adapter/ (CONTRACTS.md): export = base + LoRA."""
    from peft import LoraConfig, TaskType, get_peft_model

    tokenizer = minilm_tokenizer()
    base = tiny_bert().eval()
    student = save_model_folder(LoadedModel(base, tokenizer, "classifier"), tmp_path / "student", {
        "role": "student", "labels": ["negative", "positive"], "max_length": 64,
        "lora": {"enabled": True, "r": 4, "alpha": 8, "merged": False}})
    adapted = get_peft_model(tiny_bert(), LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"],
                                                      task_type=TaskType.SEQ_CLS))
    with torch.no_grad():
        for name, parameter in adapted.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.5)  # LoRA starts as a no-op (B = 0); make it change the outputs
    adapted.save_pretrained(student / "adapter")
    with torch.no_grad():
        encoded = tokenizer(TEXTS, padding=True, return_tensors="pt")
        expected = adapted.eval()(**encoded).logits.numpy()
        plain = base(**encoded).logits.numpy()
    assert np.abs(expected - plain).max() > 1e-3  # the adapter matters, so the test can tell
    export_model(student, out_dir=tmp_path / "onnx", max_examples=32)
    np.testing.assert_allclose(Predictor.load(tmp_path / "onnx").predict_logits(TEXTS), expected, atol=1e-5)
    assert read_model_meta(tmp_path / "onnx")["lora"]["merged"] is True


def test_a_narrowed_mpnet_cut_exports_and_its_retry_finds_the_feed_forward_outputs(tmp_path):
    """best-cpu's student is MPNet cut to fewer, narrower layers: it exports like BERT, and the int8 retry
    keeps exactly its feed-forward output projections in fp32."""
    from llmneo.config import ModelConfig
    from llmneo.inference.export import _quantize_int8
    from llmneo.training.models import build_model

    source = tmp_path / "mpnet"
    tiny_mpnet().save_pretrained(source)
    minilm_tokenizer().save_pretrained(source)
    cut = build_model(ModelConfig(name_or_path=str(source), keep_layers=[0, 3], ffn_width=32), ["neg", "pos"])
    meta = {"role": "student", "labels": ["neg", "pos"], "max_length": 64, "keep_layers": [0, 3], "ffn_width": 32}
    folder = save_model_folder(cut, tmp_path / "student", meta)

    report = export_model(folder, out_dir=tmp_path / "onnx-fp32", max_examples=32)

    assert report.agreement == 1.0
    onnx_path = Path(report.folder) / "model.onnx"
    assert _quantize_int8(onnx_path, tmp_path / "int8.onnx", keep_ffn_outputs=True) == 2
    graph = onnx.load(str(tmp_path / "int8.onnx")).graph
    fp32_linear = {node.name for node in graph.node if node.op_type == "MatMul" and "/dense/" in node.name}
    assert fp32_linear == {f"/model/mpnet/encoder/layer.{i}/output/dense/MatMul" for i in range(2)}
