"""The student in the MLflow model registry: a pyfunc model, the champion rule, promotion.

``StudentClassifier`` wraps ``llmneo.inference.Predictor``: the model folder travels as the pyfunc
artifact ``model_dir``, so ``mlflow.pyfunc.load_model(uri).predict(["a fine film"])`` and
``mlflow models serve`` give the same probabilities as ``llmneo predict``.

Champion rule (automatic, applied each time a student is registered): the new version takes the
alias ``champion`` when no version holds it yet, or when its dev accuracy (the version tag
``dev_accuracy``) is strictly higher than the current champion's. A tie keeps the older champion,
so re-running the same config never moves the alias; and weights the registry already holds (tag
``weights_sha256``) get no new version at all. Accuracies are compared as recorded: they
are comparable when both versions were scored on the same dev set, which the ``dev_fingerprint``
tag lets one check. ``llmneo promote RUN`` moves the alias by hand.
Registry stages are deprecated in MLflow; only aliases are used.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, Schema

from llmneo.atomic import sha256_file
from llmneo.modelfolder import has_model_folder, read_model_meta
from llmneo.reporting.report import read_json
from llmneo.tracking.tracker import MlflowTracker

__all__ = [
    "CHAMPION",
    "StudentClassifier",
    "apply_champion_rule",
    "log_student_model",
    "predictions_frame",
    "promote",
    "student_signature",
    "texts_from_input",
    "weights_digest",
]

CHAMPION = "champion"
MODEL_NAME = "student"  # the logged model's name inside the run
INPUT_EXAMPLE = ["a fine film", "a dull, lifeless script"]
WEIGHTS_TAG = "weights_sha256"  # on each version: a model logged again with the same weights is that version


def texts_from_input(model_input: Any) -> list[str]:
    """Accept a list of strings, a Series, a str, or a DataFrame with a ``text`` column."""
    if isinstance(model_input, pd.DataFrame):
        # a list reaches pyfunc's predict as a one-column DataFrame whose column is named 0
        if "text" not in model_input.columns and len(model_input.columns) != 1:
            raise ValueError(f"input DataFrame needs a 'text' column; it has {list(model_input.columns)}")
        values = (model_input["text"] if "text" in model_input.columns else model_input.iloc[:, 0]).tolist()
    elif isinstance(model_input, str):
        values = [model_input]
    elif isinstance(model_input, (list, tuple, pd.Series, np.ndarray)):
        values = list(model_input)
    else:
        raise TypeError(
            f"input must be a list of strings or a DataFrame with 'text'; got {type(model_input).__name__}"
        )
    bad = [index for index, value in enumerate(values) if not isinstance(value, str)]
    if bad:
        raise TypeError(f"input item {bad[0]} is {type(values[bad[0]]).__name__}, not a string")
    return values


def predictions_frame(probs: np.ndarray, labels: Sequence[str]) -> pd.DataFrame:
    """(N, C) probabilities -> one row per text: ``label``, ``pred`` and ``prob_<label>`` columns."""
    probs = np.asarray(probs, dtype=float)  # (N, C)
    predicted = probs.argmax(axis=1)  # (N,)
    frame = pd.DataFrame({"label": [labels[index] for index in predicted], "pred": predicted.astype("int64")})
    for column, label in enumerate(labels):
        frame[f"prob_{label}"] = probs[:, column]
    return frame


def student_signature(labels: Sequence[str]) -> ModelSignature:
    """One unnamed string input column, so both ``predict(["a fine film"])`` and a ``text`` column
    pass MLflow's schema check (a named ``text`` input would refuse the plain list)."""
    outputs = [ColSpec("string", "label"), ColSpec("long", "pred")]
    outputs += [ColSpec("double", f"prob_{label}") for label in labels]
    return ModelSignature(inputs=Schema([ColSpec("string")]), outputs=Schema(outputs))


class StudentClassifier(mlflow.pyfunc.PythonModel):
    """pyfunc face of the student: texts in, labels and class probabilities out."""

    def load_context(self, context) -> None:
        from llmneo.inference import Predictor  # imported here: torch loads only when the model does

        self.predictor = Predictor.load(context.artifacts["model_dir"])

    def predict(self, context, model_input, params=None) -> pd.DataFrame:
        texts = texts_from_input(model_input)
        probs = self.predictor.predict_proba(texts) if texts else np.zeros((0, len(self.predictor.labels)))
        return predictions_frame(probs, self.predictor.labels)


def _requirements() -> list[str]:
    """Pinned to what runs here, so ``mlflow models serve`` builds the same environment."""
    pins = []
    for package in ("llmneo", "torch", "transformers", "peft", "tokenizers", "numpy", "pandas", "mlflow"):
        try:
            pins.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            pins.append(package)
    return pins


def weights_digest(model_dir: Path) -> str:
    """SHA-256 over the folder's weight files: the same model trained twice, or logged twice, has one digest."""
    digest = hashlib.sha256()
    for path in sorted(Path(model_dir).glob("*.safetensors")):
        digest.update(path.name.encode())
        digest.update(sha256_file(path).encode())
    return digest.hexdigest()


def _version_with_weights(client: MlflowClient, name: str, digest: str) -> str | None:
    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except MlflowException:
        return None
    return next((v.version for v in versions if v.tags.get(WEIGHTS_TAG) == digest), None)


def _dev_accuracy(student_meta: dict[str, Any], metrics: dict[str, Any]) -> float | None:
    for source in (student_meta.get("metrics"), metrics.get("final")):
        if source:
            for key in ("accuracy", "eval_accuracy"):
                if source.get(key) is not None:
                    return float(source[key])
    return None


def log_student_model(tracker: MlflowTracker, run_dir: Path) -> str:
    """Log ``<run_dir>/student`` as a pyfunc model in the tracker's run, register it, apply the rule; returns the
    version. Weights the registry already holds (the same model trained or logged again) get no new version:
    the run is tagged with the version that holds them."""
    model_dir = Path(run_dir) / "student"
    if not has_model_folder(model_dir):
        raise FileNotFoundError(f"{model_dir}: no student model folder to log")
    active = mlflow.active_run()
    if active is None or active.info.run_id != tracker.run_id:
        raise RuntimeError(f"log_student_model: run {tracker.run_id} must be the active MLflow run")
    student_meta = read_model_meta(model_dir)
    metrics = read_json(Path(run_dir) / "metrics.json") or {}
    name = tracker.config.tracking.registered_model_name
    digest = weights_digest(model_dir)
    if (held := _version_with_weights(tracker.client, name, digest)) is not None:
        print(f"[registry] {name} version {held} already holds these weights: no new version")
        tracker.set_tags({"llmneo.registered_model": f"{name}/{held}", "llmneo.champion": "unchanged"})
        return str(held)
    info = mlflow.pyfunc.log_model(
        name=MODEL_NAME,
        python_model=StudentClassifier(),
        artifacts={"model_dir": str(model_dir)},
        signature=student_signature(student_meta["labels"]),
        input_example=pd.DataFrame({"text": INPUT_EXAMPLE}),
        registered_model_name=name,
        pip_requirements=_requirements(),
        metadata={"llmneo_run": tracker.config.name},
    )
    model_version = str(info.registered_model_version)
    accuracy = _dev_accuracy(student_meta, metrics)
    client = tracker.client
    if accuracy is not None:
        client.set_model_version_tag(name, model_version, "dev_accuracy", f"{accuracy:.6f}")
    client.set_model_version_tag(name, model_version, "llmneo_run", tracker.config.name)
    client.set_model_version_tag(name, model_version, WEIGHTS_TAG, digest)
    dev_fingerprint = (metrics.get("data") or {}).get("dev_fingerprint")
    if dev_fingerprint:
        client.set_model_version_tag(name, model_version, "dev_fingerprint", str(dev_fingerprint))
    champion = apply_champion_rule(client, name, model_version)
    tracker.set_tags(
        {"llmneo.registered_model": f"{name}/{model_version}", "llmneo.champion": str(champion).lower()}
    )
    return model_version


def _version_accuracy(client: MlflowClient, name: str, model_version: str) -> float | None:
    tag = client.get_model_version(name, model_version).tags.get("dev_accuracy")
    return float(tag) if tag is not None else None


def apply_champion_rule(client: MlflowClient, name: str, model_version: str) -> bool:
    """Move ``champion`` to ``model_version`` when it beats the current champion; True when it did."""
    try:
        current = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        current = None
    if current is not None:
        new_accuracy = _version_accuracy(client, name, model_version)
        old_accuracy = _version_accuracy(client, name, current.version)
        if new_accuracy is None or (old_accuracy is not None and new_accuracy <= old_accuracy):
            return False
    client.set_registered_model_alias(name, CHAMPION, model_version)
    return True


def _run_and_children(client: MlflowClient, run_id: str) -> list[str]:
    """A run id and its child runs' ids: the student of ``llmneo run`` is logged in a child."""
    try:
        run = client.get_run(run_id)
    except MlflowException as error:
        raise ValueError(f"{run_id}: not a run in this tracking store ({error.message})") from None
    children = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run_id}'")
    return [run_id, *(child.info.run_id for child in children)]


def promote(client: MlflowClient, name: str, run_or_version: str, alias: str = CHAMPION) -> str:
    """Set ``alias`` on a version given by number, or on the newest version logged by a run
    (a pipeline parent run counts its child runs); returns the version that now holds it."""
    if run_or_version.isdigit():
        try:
            model_version = client.get_model_version(name, run_or_version).version
        except MlflowException as error:
            raise ValueError(f"{name} version {run_or_version}: {error.message}") from None
    else:
        found = [
            entry
            for run_id in _run_and_children(client, run_or_version)
            for entry in client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
        ]
        if not found:
            raise ValueError(
                f"{run_or_version}: no version of registered model {name!r} was logged by this run"
            )
        model_version = max(found, key=lambda entry: int(entry.version)).version
    client.set_registered_model_alias(name, alias, str(model_version))
    return str(model_version)
