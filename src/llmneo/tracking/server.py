"""The ``mlflow server`` command line of ``llmneo ui``: the project's store and its artifacts."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from llmneo.tracking.store import is_local_store

__all__ = ["ui_command", "ui_environment"]


def ui_command(
    host: str, port: int, tracking_uri: str, workers: int = 1, project_dir: Path | None = None
) -> list[str]:
    """The ``mlflow server`` command line for ``llmneo ui``: the project's store, its artifacts.

    ``--artifacts-destination`` is the folder our local runs already write to, so runs logged
    without a server and runs logged through this one keep their artifacts in one place.
    """
    artifacts = (project_dir or Path.cwd()).resolve() / "mlartifacts"
    # one worker by default: MLflow's default of four costs a minute of start-up on a small machine
    command = [sys.executable, "-m", "mlflow", "server", "--host", host, "--port", str(port),
               "--workers", str(workers), "--backend-store-uri", tracking_uri]
    if is_local_store(tracking_uri):
        command += ["--artifacts-destination", str(artifacts)]
    return command


def ui_environment() -> dict[str, str]:
    """The environment for ``llmneo ui``: MLflow's GenAI job runner off unless asked for.

    The runner (judges, scheduled trace jobs) is of no use to this project, slows the start by
    seconds and kept ``mlflow server`` alive after SIGTERM in our tests.
    """
    return {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ}
