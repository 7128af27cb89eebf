"""The sections read after training: tracking (MLflow), export (ONNX) and serve (the HTTP server)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from llmneo.config.base import Strict as _Strict

__all__ = ["ExportConfig", "ServeConfig", "TrackingConfig"]


class TrackingConfig(_Strict):
    enabled: bool = Field(True, description="false: no MLflow; outputs are written either way.")
    tracking_uri: str | None = Field(None, description="Default: $MLFLOW_TRACKING_URI, else a local SQLite store.")
    experiment: str = Field("llmneo", description="MLflow experiment of the runs (and of `llmneo bench`).")
    registered_model_name: str = Field("llmneo-sst2-student", description="Registry name the student is registered under.")
    log_model: bool = Field(True, description="Log and register the student as an MLflow model.")
    log_system_metrics: bool = Field(True, description="Sample CPU, memory and GPU use while a run is open.")
    system_metrics_interval_s: float = Field(
        10.0, gt=0, description="Seconds between system metric samples (CPU, memory, GPU) while a run is open."
    )


class ExportConfig(_Strict):
    """`llmneo export --config` (command-line options win)."""

    format: Literal["onnx"] = Field("onnx", description="Export format (`llmneo export`, and `llmneo bench` when an "
                                    "export is missing).")
    quantize: Literal["none", "int8"] = Field("none", description="int8: dynamic int8 of the matrix multiplies.")
    opset: int = Field(17, ge=11, description="ONNX opset of the exported graph.")
    min_agreement_fp32: float = Field(
        1.0, ge=0, le=1, description="Least dev label agreement with PyTorch to keep an fp32 export."
    )
    min_agreement_int8: float = Field(
        0.99, ge=0, le=1, description="Least dev label agreement with PyTorch to keep an int8 export."
    )


class ServeConfig(_Strict):
    """`llmneo serve --config`: only the keys written in the YAML apply; options and LLMNEO_* do the rest."""

    host: str = Field("127.0.0.1", description="Bind address of `llmneo serve --config` (loopback by default).")
    port: int = Field(8000, gt=0, lt=65536, description="Port of `llmneo serve --config`.")
    backend: Literal["auto", "torch", "onnx"] = Field(
        "auto", description="Predictor backend of the server; auto: the run's checked int8 export, then fp32, then torch.")
    max_texts: int = Field(64, gt=0, description="Most texts in one /predict request.")
    max_text_chars: int = Field(2000, gt=0, description="Longest accepted text; longer ones are refused, not cut.")
    max_batch_size: int = Field(32, gt=0, description="Most texts gathered into one forward pass.")
    max_wait_ms: float = Field(
        0.0, ge=0, description="How long a request that finds the model idle waits for others (0: runs at once).")
    log_texts: bool = Field(False, description="Write the texts themselves to the prediction log (else hashes).")
