"""Settings of the inference service, read from ``LLMNEO_*`` environment variables.

One pydantic-settings class, so `uvicorn llmneo.serve.app:app` (model from ``LLMNEO_MODEL``), the
`llmneo serve` command and the tests all configure the server the same way. Every limit a client can
hit lives here, so `/info` can report the limits the server actually enforces.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from llmneo.inference.texts import MAX_TEXT_CHARS

__all__ = ["ServeSettings"]


class ServeSettings(BaseSettings):
    """Everything the server needs besides the model weights themselves."""

    model_config = SettingsConfigDict(env_prefix="LLMNEO_", extra="ignore", protected_namespaces=())

    model: str = Field(
        ...,
        description="A model folder, a run folder (its student/ is served) or an MLflow model URI "
        "(models:/name@alias, models:/name/3, runs:/<id>/path).",
    )
    backend: Literal["auto", "torch", "onnx"] = Field(
        "auto", description="Predictor backend. 'auto' on a run folder: its int8 ONNX export when it passed its "
        "agreement check, then its fp32 one, then the torch student; on a model folder: what it holds.")
    device: str = Field("auto", description="'auto', 'cpu' or 'cuda:0'.")
    num_threads: int | None = Field(
        None, gt=0, description="Intra-op threads of the backend; default: the cores this process may use.")
    spin_wait: bool = Field(
        False, description="Backend threads (ONNX Runtime's pool, torch's OpenMP) spin-wait between ops: a little "
        "faster on idle cores, much slower when the server shares its cores with its clients or other work.")
    host: str = Field("127.0.0.1", description="Bind address; loopback unless told otherwise.")
    port: int = Field(8000, gt=0, lt=65536)

    max_texts: int = Field(64, gt=0, description="Most texts in one /predict request.")
    max_text_chars: int = Field(
        MAX_TEXT_CHARS, gt=0, description="Longest accepted text in characters; longer texts are rejected, not cut."
    )
    max_body_bytes: int = Field(
        2_000_000,
        gt=0,
        description="Largest request body (413 above it). The default admits max_texts texts of "
        "max_text_chars emoji written as JSON \\u escapes.",
    )

    batching: bool = Field(True, description="false: every request gets its own forward pass.")
    max_batch_size: int = Field(32, gt=0, description="Most texts gathered into one forward pass.")
    max_wait_ms: float = Field(
        0.0, ge=0, description="How long a request that finds the model idle waits for others (0: runs at once; "
        "requests arriving while the model is busy always share the next pass).")
    max_batch_tokens: int = Field(
        512, gt=0, description="Most padded tokens (texts x longest) in one forward pass: a gathered batch runs "
        "as length-sorted passes within it, so short texts are not padded to the longest one.")
    max_queue_texts: int = Field(
        1024, gt=0, description="Most texts waiting for the model; above it /predict answers 503 with Retry-After.")
    predict_batch_size: int = Field(32, gt=0, description="Batch size inside the predictor's forward pass.")

    api_key: SecretStr | None = Field(None, description="When set, /predict needs 'Authorization: Bearer <key>'.")

    log_path: Path | None = Field(None, description="Rotating JSONL prediction log; none when unset.")
    log_texts: bool = Field(False, description="Write the texts themselves to the log (else only hashes).")
    log_max_bytes: int = Field(10_000_000, gt=0, description="Size at which the log rotates.")
    log_backups: int = Field(5, ge=0, description="Rotated log files kept.")

    mlflow_session: bool = Field(False, description="Record the serving session as an MLflow run at shutdown.")
    mlflow_tracking_uri: str | None = Field(None, description="Default: $MLFLOW_TRACKING_URI, else the project's sqlite:///mlflow.db.")
    mlflow_experiment: str = Field("llmneo-serving", description="Experiment of the session runs.")

    @field_validator("api_key", "log_path", "mlflow_tracking_uri", "num_threads", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        """`LLMNEO_API_KEY=` (as compose files write `${LLMNEO_API_KEY:-}`) means no key, not an empty one."""
        return None if isinstance(value, str) and not value.strip() else value
