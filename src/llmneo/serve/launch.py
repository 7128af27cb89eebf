"""Start the server: `run_server` for `llmneo serve`, and helpers that run one for a benchmark or a test.

`run_server` exports the settings as LLMNEO_* variables and hands uvicorn the import string
`llmneo.serve.app:app`, the same path the Docker image uses, so `--workers N` works (each worker
process builds its app from the environment) and there is only one way the app gets configured.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from llmneo.inference.cores import available_cores
from llmneo.modelfolder import read_model_meta
from llmneo.serve.model_source import MLFLOW_SCHEMES, check_mlflow_source, fetch_model
from llmneo.serve.service import backend_label
from llmneo.serve.settings import ServeSettings

__all__ = ["APP_IMPORT", "free_port", "run_server", "serve_in_thread", "server_process", "settings_env", "wait_healthy"]

APP_IMPORT = "llmneo.serve.app:app"
GRACEFUL_SHUTDOWN_S = 30


def settings_env(settings: ServeSettings) -> dict[str, str]:
    """The LLMNEO_* variables that rebuild `settings` in another process."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump(exclude_none=True).items():
        if name == "api_key":
            value = settings.api_key.get_secret_value() if settings.api_key else None
        if value is not None:
            env[f"LLMNEO_{name.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


def run_server(settings: ServeSettings, workers: int = 1, access_log: bool = False) -> None:
    """Serve until interrupted; a local model path is checked first so a typo fails in one line.

    The first line printed says which folder and backend will serve (a run folder: its fastest checked
    export). With N workers each process gets cores/N threads unless --num-threads says otherwise:
    N processes each sized for the whole machine would fight over its cores. No access log by default:
    a line per request costs the event loop CPU, and /metrics and the prediction log count requests.
    """
    import uvicorn

    if workers > 1 and settings.num_threads is None:
        settings = settings.model_copy(update={"num_threads": max(1, available_cores() // workers)})
    if settings.model.startswith(MLFLOW_SCHEMES):
        check_mlflow_source(settings.model, settings.mlflow_tracking_uri)  # a wrong name: one line, no startup
    else:
        folder, _ = fetch_model(settings.model, backend=settings.backend)  # FileNotFoundError naming the path
        threads = settings.num_threads or available_cores()
        print(f"INFO:     llmneo serve: {folder} ({backend_label(read_model_meta(folder))} backend), "
              f"{workers} worker(s) x {threads} threads",
              file=sys.stderr, flush=True)
    os.environ.update(settings_env(settings))
    uvicorn.run(APP_IMPORT, host=settings.host, port=settings.port, workers=workers, access_log=access_log,
                timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S, log_level="info")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, is_running: Callable[[], bool] = lambda: True, timeout_s: float = 120.0,
                 path: str = "/health") -> float:
    """Poll `url` + `path` until it answers 200 and return the seconds waited; fail as soon as the server stops
    running. The one such loop: the tests, the benchmark and the container checks all wait through it."""
    started = time.monotonic()
    last = "no answer"
    while time.monotonic() - started < timeout_s:
        if not is_running():
            raise RuntimeError(f"the server at {url} stopped before it became healthy (see its log)")
        try:
            response = httpx.get(f"{url}{path}", timeout=5.0)
            if response.status_code == 200:
                return time.monotonic() - started
            last = f"HTTP {response.status_code}"
        except httpx.TransportError as error:
            last = type(error).__name__
        time.sleep(0.2)
    raise TimeoutError(f"{url}{path} did not answer 200 within {timeout_s:.0f} s (last: {last})")


@contextmanager
def server_process(
    command: list[str], env: dict[str, str], url: str, log_file: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server command in its own process, wait until healthy, stop it with SIGTERM on exit."""
    output = open(log_file, "wb") if log_file is not None else subprocess.DEVNULL  # noqa: SIM115
    process = subprocess.Popen(command, env={**os.environ, **env}, stdout=output, stderr=subprocess.STDOUT)
    try:
        wait_healthy(url, lambda: process.poll() is None)
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=GRACEFUL_SHUTDOWN_S + 10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if log_file is not None:
            output.close()


def uvicorn_command(host: str, port: int, workers: int = 1) -> list[str]:
    """The container's command line (its UVICORN_ACCESS_LOG=false included), run with this interpreter."""
    return [sys.executable, "-m", "uvicorn", APP_IMPORT, "--host", host, "--port", str(port), "--no-access-log",
            "--workers", str(workers), "--timeout-graceful-shutdown", str(GRACEFUL_SHUTDOWN_S)]


@contextmanager
def serve_in_thread(app: Any, port: int | None = None) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on a loopback port in a thread; yields its base URL."""
    import uvicorn

    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S))
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, thread.is_alive)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=GRACEFUL_SHUTDOWN_S + 10)
