"""Where the served model comes from: a local folder, or an MLflow model URI fetched once at start-up.

`llmneo serve` accepts what a user has at hand: an outputs run folder, a model folder, or a registry
reference such as ``models:/llmneo-sst2-student@champion``. Whatever the source, the server ends up
with a local llmneo model folder (CONTRACTS.md) and a version string for /info and the logs.

A run folder is served by its fastest backend that is known to be right (`modelfolder.serving_folder`):
its int8 ONNX export when that export passed its agreement check with PyTorch, then its fp32 export,
then the torch student. `llmneo predict` and `evaluate` pick the same way.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from llmneo.modelfolder import META_FILE, serving_folder
from llmneo.tracking.store import resolve_tracking_uri

__all__ = ["MLFLOW_SCHEMES", "check_mlflow_source", "fetch_model", "folder_version"]

MLFLOW_SCHEMES = ("models:/", "runs:/", "mlflow-artifacts:/")


def fetch_model(source: str, tracking_uri: str | None = None, backend: str = "auto") -> tuple[Path, str | None]:
    """A local model folder for `source`, and its registry version when it came from the registry."""
    if source.startswith(MLFLOW_SCHEMES):
        return _download(source, resolve_tracking_uri(tracking_uri))
    if not Path(source).exists():
        raise FileNotFoundError(f"MODEL {source}: no such folder (give a run folder, a model folder or an MLflow "
                                "URI such as models:/name@champion)")
    return serving_folder(Path(source), backend), None


def folder_version(folder: Path) -> str:
    """A short content hash of the folder's llmneo_model.json: it changes whenever the model does."""
    digest = hashlib.sha256((folder / META_FILE).read_bytes()).hexdigest()
    return f"sha256:{digest[:12]}"


def check_mlflow_source(uri: str, tracking_uri: str | None = None) -> str | None:
    """The registry version an MLflow URI names (None for runs:/ and other URIs), or a FileNotFoundError in one
    line: checked before a server starts, so a wrong name is not a 60-line startup traceback."""
    import mlflow
    from mlflow.exceptions import MlflowException

    store = resolve_tracking_uri(tracking_uri)
    try:
        return _registered_version(uri, mlflow.MlflowClient(store, registry_uri=store))[1]
    except MlflowException as error:
        raise FileNotFoundError(f"{uri}: {error.message} (MLflow store {store})") from None


def _download(uri: str, tracking_uri: str) -> tuple[Path, str | None]:
    """Download an MLflow model, then find the llmneo model folder inside it (a pyfunc keeps it as an artifact).

    A registered version is resolved here with a client bound to `tracking_uri`: MLflow's own
    models:/ resolution reads the process-wide registry URI and ignores the one passed to it.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient(tracking_uri, registry_uri=tracking_uri)
    try:
        name, version = _registered_version(uri, client)
        artifact_uri = client.get_model_version_download_uri(name, version) if name and version else uri
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=artifact_uri, tracking_uri=tracking_uri))
    except MlflowException as error:
        raise FileNotFoundError(f"{uri}: {error.message} (MLflow store {tracking_uri})") from None
    found = sorted(local.rglob(META_FILE), key=lambda path: len(path.parts))  # the shallowest one
    if not found:
        raise FileNotFoundError(f"{uri}: downloaded to {local}, but it holds no llmneo model folder ({META_FILE})")
    return found[0].parent, version


def _registered_version(uri: str, client: Any) -> tuple[str | None, str | None]:
    """(name, version) for models:/name/3 or models:/name@alias; (None, None) for other URIs."""
    if not uri.startswith("models:/"):
        return None, None
    reference = uri.removeprefix("models:/").strip("/")
    if "@" in reference:
        name, alias = reference.split("@", 1)
        return name, str(client.get_model_version_by_alias(name, alias).version)
    parts = reference.split("/")
    if len(parts) == 2 and parts[1].isdigit():
        return parts[0], parts[1]
    return None, None
