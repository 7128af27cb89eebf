"""scripts/gpu-smoke.sh on CPU, a few steps on a tiny random Llama: the GPU check cannot rot unnoticed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import PROJECT_ROOT


@pytest.mark.slow
def test_the_gpu_smoke_runs_the_reference_student_path_on_cpu(tmp_path, tiny_llama_source, sst2_dir):
    env = {**os.environ, "PYTHON": sys.executable, "LLMNEO_DATA_DIR": str(sst2_dir)}
    command = ["bash", str(PROJECT_ROOT / "scripts" / "gpu-smoke.sh"), "--device", "cpu", "--steps", "2",
               "--rows", "32", "--dev", "16", "--student", str(tiny_llama_source), "--gguf", "",
               "--out", str(tmp_path / "smoke")]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("GPU-SMOKE "))
    summary = json.loads(line.removeprefix("GPU-SMOKE "))
    assert summary == json.loads((tmp_path / "smoke" / "gpu-smoke.json").read_text())
    assert summary["device"] == "cpu" and summary["steps"] == 2 and summary["train_rows"] == 32
    assert 0 <= summary["student_dev_accuracy"] <= 1 and summary["onnx_agreement"] >= 0.99
    assert summary["predict_examples_per_second_torch_bf16"] > 0 and summary["peak_memory_mib_training"] > 0
    assert 0 < summary["parameters"]["trainable_share"] < 1  # LoRA: adapters and the score head
