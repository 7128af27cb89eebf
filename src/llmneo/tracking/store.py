"""The experiment store: where runs go, the experiment they go in, and one-shot runs.

The one home of the store's defaults, used by the pipeline's tracker, ``llmneo bench``, the
server's session record and every command that takes ``--tracking-uri``. Where runs go: an explicit
URI when given (``tracking.tracking_uri`` or ``--tracking-uri``), else ``$MLFLOW_TRACKING_URI``,
else a SQLite store ``<project>/mlflow.db`` with artifacts in ``<project>/mlartifacts`` (the
project is the working directory), which needs no server.

A leaf module: no other llmneo import, and MLflow is imported only when a run is written, so
importing this module costs nothing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "default_artifact_root",
    "default_tracking_uri",
    "experiment_id",
    "is_local_store",
    "log_one_shot_run",
    "resolve_tracking_uri",
]


def default_tracking_uri(project_dir: Path | None = None) -> str:
    """The local store that needs no server: ``sqlite:///<project>/mlflow.db``."""
    project = (project_dir or Path.cwd()).resolve()
    return f"sqlite:///{project / 'mlflow.db'}"


def default_artifact_root(project_dir: Path | None = None) -> str:
    """Artifacts beside the SQLite store, as ``mlflow server`` lays them out (``mlartifacts``)."""
    return ((project_dir or Path.cwd()).resolve() / "mlartifacts").as_uri()


def resolve_tracking_uri(explicit: str | None = None, project_dir: Path | None = None) -> str:
    """The given URI, else ``$MLFLOW_TRACKING_URI``, else the project's local SQLite store."""
    return explicit or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(project_dir)


def is_local_store(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:")) or "://" not in uri


def experiment_id(client: Any, name: str, tracking_uri: str) -> str:
    """Get or create the experiment; a local store keeps its artifacts in ``<project>/mlartifacts``."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = default_artifact_root() if is_local_store(tracking_uri) else None
    return client.create_experiment(name, artifact_location=location)


def log_one_shot_run(
    tracking_uri: str,
    experiment: str,
    run_name: str,
    *,
    tags: Mapping[str, str] | None = None,
    metrics: Mapping[str, float] | None = None,
    params: Mapping[str, Any] | None = None,
    artifacts: Mapping[str, Path] | None = None,
) -> str:
    """Write a finished run in one go (metrics at step 0, params, files) and return its id.

    Goes through ``MlflowClient`` with an explicit run id, never the fluent API, so it neither sees
    nor ends a run the calling process has open. ``artifacts``: file path -> artifact folder.
    """
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    client = MlflowClient(tracking_uri)
    run = client.create_run(experiment_id(client, experiment, tracking_uri), run_name=run_name,
                            tags=dict(tags or {}))
    run_id = run.info.run_id
    now = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[Metric(key, float(value), now, 0) for key, value in (metrics or {}).items()],
        params=[Param(key, str(value)) for key, value in (params or {}).items()],
    )
    for path, folder in (artifacts or {}).items():
        client.log_artifact(run_id, str(path), artifact_path=folder)
    client.set_terminated(run_id)
    return run_id
