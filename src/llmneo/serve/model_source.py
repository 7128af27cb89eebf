"""Where the served model comes from: a local folder, or an MLflow model URI fetched once at start-up.

`llmneo serve` accepts what a user has at hand: an outputs run folder, a model folder, or a registry
reference such as ``models:/llmneo-sst2-student@champion``. Whatever the source, the server ends up
with a local llmneo model folder (CONTRACTS.md) and a version string for /info and the logs.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from llmneo.inference import META_FILE, resolve_model_dir

__all__ = ["MLFLOW_SCHEMES", "fetch_model", "folder_version", "resolve_tracking_uri"]

MLFLOW_SCHEMES = ("models:/", "runs:/", "mlflow-artifacts:/")


def resolve_tracking_uri(explicit: str | None = None) -> str:
    """The given URI, else $MLFLOW_TRACKING_URI, else the project's store (the one training writes to)."""
    from llmneo.tracking import default_tracking_uri

    return explicit or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()


def fetch_model(source: str, tracking_uri: str | None = None) -> tuple[Path, str | None]:
    """A local model folder for `source`, and its registry version when it came from the registry."""
    if source.startswith(MLFLOW_SCHEMES):
        uri = resolve_tracking_uri(tracking_uri)
        return _download(source, uri), _registry_version(source, uri)
    return resolve_model_dir(source), None


def folder_version(folder: Path) -> str:
    """A short content hash of the folder's llmneo_model.json: it changes whenever the model does."""
    digest = hashlib.sha256((folder / META_FILE).read_bytes()).hexdigest()
    return f"sha256:{digest[:12]}"


def _download(uri: str, tracking_uri: str) -> Path:
    import mlflow

    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, tracking_uri=tracking_uri))
    found = sorted(local.rglob(META_FILE), key=lambda path: len(path.parts))  # the shallowest one
    if not found:
        raise FileNotFoundError(f"{uri}: downloaded to {local}, but it holds no llmneo model folder ({META_FILE})")
    return found[0].parent


def _registry_version(uri: str, tracking_uri: str) -> str | None:
    """'3' for models:/name/3 or models:/name@alias (asking the registry), else None."""
    if not uri.startswith("models:/"):
        return None
    reference = uri.removeprefix("models:/").strip("/")
    if "@" in reference:
        import mlflow

        name, alias = reference.split("@", 1)
        return str(mlflow.MlflowClient(tracking_uri).get_model_version_by_alias(name, alias).version)
    parts = reference.split("/")
    return parts[1] if len(parts) == 2 and parts[1].isdigit() else None
