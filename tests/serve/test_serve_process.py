"""The server as deployed: `uvicorn llmneo.serve.app:app` configured by LLMNEO_* variables, and `llmneo serve`.

Each test runs the server in its own process and stops it with SIGTERM, as a container runtime does.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
import pytest

from llmneo.inference.cores import available_cores
from llmneo.serve.launch import free_port, server_process, uvicorn_command

pytestmark = pytest.mark.slow


def test_sigterm_lets_in_flight_requests_finish_then_logs_the_session(tiny_model_dir: Path, tmp_path: Path) -> None:
    import mlflow

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "logs" / "predictions.jsonl"
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {
        "LLMNEO_MODEL": str(tiny_model_dir),
        "LLMNEO_MAX_WAIT_MS": "1500",  # requests sit in the batcher long enough to be caught in flight
        "LLMNEO_MAX_BATCH_SIZE": "64",
        "LLMNEO_LOG_PATH": str(log_path),
        "LLMNEO_MLFLOW_SESSION": "1",
        "LLMNEO_MLFLOW_TRACKING_URI": tracking_uri,
        "LLMNEO_MLFLOW_EXPERIMENT": "serve-test",
    }
    texts = [f"in flight {i}" for i in range(5)]
    with server_process(uvicorn_command("127.0.0.1", port), env, url, tmp_path / "server.log") as process:
        with ThreadPoolExecutor(len(texts)) as pool:
            futures = [pool.submit(httpx.post, f"{url}/predict", json={"texts": [t]}, timeout=60) for t in texts]
            time.sleep(0.5)
            process.send_signal(signal.SIGTERM)
            responses = [future.result() for future in futures]
        # uvicorn re-raises the signal once it has shut down cleanly, so -SIGTERM is a clean exit too
        assert process.wait(timeout=60) in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in (tmp_path / "server.log").read_text()
    assert [r.status_code for r in responses] == [200] * len(texts)

    entries = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert sorted(e["length"] for e in entries) == sorted(len(t) for t in texts)
    assert all("text" not in e and e["model_version"].startswith("sha256:") for e in entries)

    runs = mlflow.MlflowClient(tracking_uri).search_runs(
        [mlflow.MlflowClient(tracking_uri).get_experiment_by_name("serve-test").experiment_id]
    )
    assert len(runs) == 1
    assert runs[0].data.metrics["requests"] == len(texts)
    assert runs[0].data.metrics["label_share_negative"] + runs[0].data.metrics["label_share_positive"] == 1.0
    assert "latency_p95_ms" in runs[0].data.metrics


def test_llmneo_serve_command_with_workers_binds_loopback(tiny_model_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    llmneo = str(Path(sys.executable).with_name("llmneo"))
    command = [llmneo, "serve", str(tiny_model_dir.parent), "--port", str(port), "--workers", "2",
               "--no-batching", "--max-wait-ms", "7"]
    with server_process(command, {"LLMNEO_API_KEY": "k"}, url, tmp_path / "server.log") as process:
        info = httpx.get(f"{url}/info", timeout=10).json()
        assert info["limits"]["batching"] is False and info["limits"]["max_wait_ms"] == 7.0
        assert info["threads"] == max(1, available_cores() // 2)  # the cores are shared out among the workers
        assert httpx.post(f"{url}/predict", json={"texts": ["hi"]}, timeout=30).status_code == 401
        answer = httpx.post(f"{url}/predict", json={"texts": ["hi"]}, headers={"Authorization": "Bearer k"}, timeout=30)
        assert answer.status_code == 200
        listening = [c.laddr for c in psutil.Process(process.pid).net_connections() if c.status == psutil.CONN_LISTEN]
        assert listening and all(address.ip == "127.0.0.1" for address in listening)
        assert len(psutil.Process(process.pid).children()) >= 2  # the worker processes


def test_llmneo_serve_refuses_a_missing_model_in_one_line(tmp_path: Path) -> None:
    import subprocess

    llmneo = str(Path(sys.executable).with_name("llmneo"))
    result = subprocess.run([llmneo, "serve", str(tmp_path / "nope")], check=False, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error:") and "nope" in result.stderr
    assert "Traceback" not in result.stderr
