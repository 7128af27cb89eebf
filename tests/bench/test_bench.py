"""`llmneo bench`: FLOP counts against torch's counter, the target check, and a full run on a tiny run folder."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import pytest
import torch
from mlflow import MlflowClient
from torch.utils.flop_counter import FlopCounterMode
from typer.testing import CliRunner

from conftest import minilm_tokenizer, tiny_bert
from llmneo.bench import BenchResult, check_targets, render_markdown
from llmneo.bench.peak import matmul_peak_gflops
from llmneo.cli import app
from llmneo.config import Config, save_config
from llmneo.maths.flops import batches_flops, forward_flops
from llmneo.maths.params import count_parameters
from llmneo.modelfolder.weights import LoadedModel, save_model_folder


def _counted(model: torch.nn.Module, **inputs) -> int:
    """FLOPs of one forward as torch counts them (eager attention: its matmuls are plain ops)."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(**inputs)
    return counter.get_total_flops()


def test_forward_flops_match_torchs_flop_counter_for_bert_and_llama():
    from transformers import BertConfig, BertModel, LlamaConfig, LlamaModel

    ids = torch.randint(0, 100, (3, 20))
    bert = BertConfig(vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=128)
    bert._attn_implementation = "eager"
    counted = _counted(BertModel(bert, add_pooling_layer=False).eval(), input_ids=ids)
    assert forward_flops(bert.to_dict(), 3, 20) == counted
    llama = LlamaConfig(vocab_size=100, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2)  # gated MLP, grouped KV heads
    llama._attn_implementation = "eager"
    assert forward_flops(llama.to_dict(), 3, 20) == _counted(LlamaModel(llama).eval(), input_ids=ids)
    assert batches_flops(bert.to_dict(), [(3, 20), (1, 5)]) == forward_flops(bert.to_dict(), 3, 20) + forward_flops(
        bert.to_dict(), 1, 5)
    with pytest.raises(ValueError, match="hidden_size"):
        forward_flops({"num_hidden_layers": 2}, 1, 1)


def test_matmul_peak_is_a_positive_rate_and_restores_the_thread_count():
    threads = torch.get_num_threads()
    peaks = matmul_peak_gflops(size=256, repeats=2, num_threads=1)
    assert set(peaks) == {"torch", "onnxruntime"} and all(0.1 < gflops < 1e5 for gflops in peaks.values())
    assert torch.get_num_threads() == threads


def _result(name: str, role: str, backend: str, p50: float, throughput: float, accuracy: float,
            share: float) -> BenchResult:
    return BenchResult(name=name, role=role, backend=backend, precision="int8" if "int8" in name else "fp32",
                       accuracy=accuracy, f1_macro=accuracy, parameters=10**6, size_mb=4.0, peak_rss_mb=500.0,
                       model_rss_mb=20.0, latency_p50_ms=p50, latency_p99_ms=2 * p50, throughput=throughput,
                       gflop_per_example=0.1, achieved_gflops=share * 100, peak_share=share)


def test_targets_are_judged_as_ratios_within_one_run():
    results = [_result("teacher torch fp32", "teacher", "torch", 60, 30, 0.90, 0.2),
               _result("teacher onnx fp32", "teacher", "onnx", 20, 110, 0.90, 0.5),
               _result("student torch fp32", "student", "torch", 25, 100, 0.88, 0.2),
               _result("student onnx fp32", "student", "onnx", 6, 300, 0.88, 0.5),
               _result("student onnx int8", "student", "onnx", 4, 320, 0.878, 0.45)]
    targets = check_targets(results, peak_gflops=100)
    assert [t.passed for t in targets] == [True, True, True, True]
    assert targets[0].measured == "torch fp32: 3.33x, onnx fp32: 2.73x" and "student onnx int8" in targets[1].name
    assert targets[3].measured.endswith("45% (student onnx int8); best fp32: 50% (student onnx fp32)")
    results[4].accuracy = 0.86  # 2 points below eager: the speed-up no longer counts
    results[2].throughput = 80  # 2.67x the teacher in torch, and 2.73x in ONNX
    targets = check_targets(results, peak_gflops=100)
    assert [t.passed for t in targets] == [False, False, True, True]
    higher = [*results[:4], replace(results[4], accuracy=0.89)]  # 1 point above eager: no loss, it passes
    assert check_targets(higher, peak_gflops=100)[1].passed
    table = render_markdown(results, 100, targets, {"dev texts": 872}, ["a note"])
    assert table.count("\n| ") == 6 and "| student onnx int8 | 0.8600 |" in table
    assert "MISSED" in table and "- a note" in table and "matmul peak: 100.0 GFLOP/s" in table


@pytest.fixture()
def tiny_run(tiny_model_dir, tmp_path, sst2_dir):
    """A run folder: the tiny student, a 4-layer tiny teacher, and the resolved config that names them."""
    run = tmp_path / "outputs" / "tiny"
    shutil.copytree(tiny_model_dir, run / "student")
    teacher = tiny_bert(layers=4)
    save_model_folder(LoadedModel(teacher, minilm_tokenizer(), "classifier"), run / "teacher",
                      {"role": "teacher", "labels": ["negative", "positive"], "max_length": 64,
                       "parameters": count_parameters(teacher)})
    config = Config.model_validate({
        "name": "tiny", "output_dir": str(tmp_path / "outputs"), "data": {"glue_dir": str(sst2_dir)},
        "teacher": {"name_or_path": "tiny-bert"}, "student": {"name_or_path": "tiny-bert"},
        "tracking": {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "experiment": "bench-test"},
    })
    save_config(config, run / "config.yaml")
    return run


@pytest.mark.slow
def test_bench_measures_every_model_writes_table_chart_and_logs_to_mlflow(tiny_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MLflow artifacts of the local store land under the working folder
    result = CliRunner().invoke(app, ["bench", "--config", str(tiny_run / "config.yaml"), "--max-examples", "40",
                                      "--threads", "1", "--latency-threads", "1"])
    assert result.exit_code == 0, result.output
    for export in ("onnx-fp32", "onnx-int8", "teacher-onnx-fp32"):  # missing exports were made on the way
        assert (tiny_run / "export" / export / "model.onnx").is_file()
    table = (tiny_run / "bench.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [row.split(" | ")[0] for row in rows] == ["| teacher torch fp32", "| teacher onnx fp32",
                                                     "| student torch fp32", "| student onnx fp32",
                                                     "| student onnx int8"]
    assert (tiny_run / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((tiny_run / "bench.json").read_text())
    by_name = {r["name"]: r for r in report["results"]}
    assert report["matmul_peak_gflops"] > 0 and report["setup"]["dev texts"] == 40
    assert "onnxruntime" in report["setup"]["matmul GFLOP/s by library"]
    for row in report["results"]:
        assert 0 <= row["accuracy"] <= 1 and row["throughput"] > 0 and row["peak_rss_mb"] > row["model_rss_mb"] >= 0
        assert 0 < row["latency_p50_ms"] <= row["latency_p99_ms"] and row["achieved_gflops"] > 0
    teacher, student = by_name["teacher torch fp32"], by_name["student torch fp32"]
    assert teacher["gflop_per_example"] > 1.5 * student["gflop_per_example"]  # 4 layers against 2
    assert by_name["student onnx int8"]["size_mb"] < by_name["student onnx fp32"]["size_mb"]
    assert by_name["student onnx fp32"]["accuracy"] == student["accuracy"]
    assert len(report["targets"]) == 4
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("bench-test").experiment_id])
    assert [run.info.run_name for run in runs] == ["tiny-bench"] and runs[0].info.status == "FINISHED"
    assert runs[0].data.metrics["bench.student_onnx_int8.throughput"] > 0
    logged = {item.path for item in client.list_artifacts(runs[0].info.run_id, "bench")}
    assert logged == {"bench/bench.md", "bench/bench.png", "bench/bench.json"}


def test_bench_refuses_a_folder_that_is_not_a_run(tmp_path):
    result = CliRunner().invoke(app, ["bench", str(tmp_path), "--no-tracking"])
    assert result.exit_code == 2 and "not a run folder" in result.output
    result = CliRunner().invoke(app, ["bench"])
    assert result.exit_code == 2 and "run folder or --config" in result.output


@pytest.mark.slow
def test_bench_out_holds_every_file_it_makes(tiny_run, tmp_path):
    """`bench --out DIR` on a run with no exports yet: the exports it makes land under DIR too, none in the run."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("export", "bench.*"))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["bench", str(run), "--out", str(out), "--max-examples", "16", "--threads", "1",
                                      "--no-tracking"])
    assert result.exit_code == 0, result.output
    assert not (run / "export").exists() and not (run / "bench.md").exists()
    assert {p.name for p in (out / "export").iterdir()} == {"onnx-fp32", "onnx-int8", "teacher-onnx-fp32"}
    assert (out / "bench.md").is_file()
