"""Serving the fastest backend: a run folder's checked ONNX export is picked, said so in /info and the
first log line, and the ONNX serving path runs without torch, transformers or MLflow in the process."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from llmneo.inference.export import export_model
from llmneo.modelfolder import read_model_meta, write_model_meta
from llmneo.serve.launch import free_port, server_process
from llmneo.serve.model_source import serving_folder

FORBIDDEN = ("torch", "transformers", "mlflow", "scipy", "sklearn", "pandas", "pyarrow")


@pytest.fixture(scope="module")
def onnx_run(tiny_model_dir: Path, tmp_path_factory, sst2_dir: Path) -> Path:
    """A run folder as `llmneo run` then `llmneo export` leave it: student/ and export/onnx-fp32/."""
    run = tmp_path_factory.mktemp("onnx-run") / "run"
    shutil.copytree(tiny_model_dir, run / "student")
    report = export_model(run, quantize="none", data_path=sst2_dir / "dev.tsv", max_examples=64)
    assert report.passed and Path(report.folder) == run / "export" / "onnx-fp32"
    return run


def _fake_int8(run: Path, agreement: float) -> Path:
    """An int8 folder beside the fp32 one, its recorded check passed or failed as asked."""
    folder = run / "export" / "onnx-int8"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(run / "export" / "onnx-fp32", folder)
    meta = read_model_meta(folder)
    meta["quantization"] = "int8"
    meta["export"] = {**meta["export"], "quantization": "int8", "agreement": agreement, "min_agreement": 0.99}
    write_model_meta(folder, meta)
    return folder


def test_a_run_folder_is_served_by_its_fastest_checked_backend(onnx_run: Path, tmp_path: Path) -> None:
    fp32 = onnx_run / "export" / "onnx-fp32"
    assert serving_folder(onnx_run) == fp32
    assert serving_folder(onnx_run, "onnx") == fp32
    assert serving_folder(onnx_run, "torch") == onnx_run / "student"
    assert serving_folder(onnx_run / "student") == onnx_run / "student"  # a model folder is served as given
    run = tmp_path / "run"
    shutil.copytree(onnx_run, run)
    int8 = _fake_int8(run, agreement=0.995)
    assert serving_folder(run) == int8
    _fake_int8(run, agreement=0.95)  # below its threshold: never served
    assert serving_folder(run) == run / "export" / "onnx-fp32"
    shutil.rmtree(run / "export")
    assert serving_folder(run) == run / "student"
    with pytest.raises(FileNotFoundError, match="llmneo export"):
        serving_folder(run, "onnx")


def test_the_onnx_serving_path_never_imports_torch(onnx_run: Path) -> None:
    """A fresh interpreter serves the run's ONNX export on loopback and answers; then sys.modules must
    hold none of the training stack. (Only a new process can tell: this one imported torch long ago.)"""
    script = textwrap.dedent(f"""
        import json, sys, urllib.request
        from llmneo.serve.app import create_app
        from llmneo.serve.launch import serve_in_thread
        from llmneo.serve.settings import ServeSettings

        with serve_in_thread(create_app(ServeSettings(model={str(onnx_run)!r}))) as url:
            request = urllib.request.Request(url + "/predict", data=json.dumps({{"texts": ["good", "bad"]}}).encode(),
                                             headers={{"Content-Type": "application/json"}})
            answer = json.loads(urllib.request.urlopen(request, timeout=30).read())
            info = json.loads(urllib.request.urlopen(url + "/info", timeout=30).read())
        loaded = sorted({{name.split(".")[0] for name in sys.modules}} & set({FORBIDDEN!r}))
        print(json.dumps({{"results": len(answer["results"]), "backend": info["backend"], "loaded": loaded}}))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"results": 2, "backend": "onnx", "loaded": []}


@pytest.mark.slow
def test_llmneo_serve_says_which_backend_first_and_in_info(onnx_run: Path, tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    command = [str(Path(sys.executable).with_name("llmneo")), "serve", str(onnx_run), "--port", str(port)]
    with server_process(command, {}, url, log):
        info = httpx.get(f"{url}/info", timeout=10).json()
        answer = httpx.post(f"{url}/predict", json={"texts": ["fine", "awful"]}, timeout=30)
    first_line = log.read_text().splitlines()[0]
    assert "export/onnx-fp32" in first_line and "onnx fp32 backend" in first_line, first_line
    assert info["backend"] == "onnx" and info["quantization"] == "none"
    assert info["model_dir"].endswith("export/onnx-fp32") and info["threads"] >= 1
    assert answer.status_code == 200 and len(answer.json()["results"]) == 2
