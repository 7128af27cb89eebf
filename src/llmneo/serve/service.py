"""The model service behind the routes: a Predictor, its micro-batcher, logs and metrics.

Routes talk to this object only; it talks to `llmneo.inference.Predictor` only, so the HTTP layer
never knows which backend (torch or ONNX) runs the model. It is built in the app's lifespan (the
model loads off the event loop) and `shutdown` drains queued requests before anything closes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from llmneo.inference import Predictor
from llmneo.inference.cores import available_cores
from llmneo.maths.decide import Prediction, decide
from llmneo.serve.batching import MicroBatcher
from llmneo.serve.inference_log import InferenceLog, SessionStats, record_session_in_mlflow
from llmneo.serve.metrics import ServeMetrics
from llmneo.serve.model_source import fetch_model, folder_version
from llmneo.serve.settings import ServeSettings
from llmneo.tracking.store import resolve_tracking_uri

__all__ = [
    "ModelService",
    "PredictOutcome",
    "backend_label",
    "describe",
    "load_predictor",
    "sleeping_thread_pools",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PredictOutcome:
    request_id: str
    predictions: list[Prediction]
    latency_ms: float


def sleeping_thread_pools(settings: ServeSettings) -> None:
    """Unless LLMNEO_SPIN_WAIT is on, make torch's OpenMP threads sleep between parallel regions, as
    ONNX Runtime's pool threads do (`session_options`).

    Like ONNX Runtime's, OpenMP's idle threads spin by default, which on cores shared with the event loop,
    the clients and neighbours stalls every pass: measured on 2 busy cores, a 2-text torch call took
    ~210 ms spinning and ~10-20 ms with OMP_WAIT_POLICY=PASSIVE. OpenMP reads the variable once, when
    torch loads it, so this runs before the model is loaded; an explicit OMP_WAIT_POLICY wins.
    """
    if not settings.spin_wait:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def load_predictor(settings: ServeSettings) -> tuple[Predictor, str]:
    """Fetch and load the model named by the settings; returns it with its version string.

    Threads default to the cores this process has (`llmneo serve --workers N` divides them): ONNX
    Runtime would otherwise size its pool by the machine's cores, not the container's share.
    """
    sleeping_thread_pools(settings)
    folder, registry_version = fetch_model(settings.model, settings.mlflow_tracking_uri, settings.backend)
    predictor = Predictor.load(folder, backend=settings.backend, device=settings.device,
                               num_threads=settings.num_threads or available_cores(),
                               onnx_spinning=settings.spin_wait)
    return predictor, registry_version or folder_version(folder)


def backend_label(meta: dict[str, Any]) -> str:
    """'torch', 'onnx int8' or 'onnx fp32': what a model folder runs on, for people."""
    if meta.get("backend", "torch") != "onnx":
        return "torch"
    return f"onnx {'int8' if meta.get('quantization') == 'int8' else 'fp32'}"


def describe(predictor: Predictor, settings: ServeSettings) -> str:
    """One line on what is served and how: the first thing the server logs."""
    threads = settings.num_threads or available_cores()
    return (f"llmneo serving {predictor.model_dir} with the {backend_label(predictor.meta)} backend on "
            f"{predictor.device}, {threads} threads, batches of up to {settings.max_batch_size} texts")


@dataclass
class ModelService:
    """One loaded model and everything that serves it."""

    settings: ServeSettings
    predictor: Predictor
    version: str
    metrics: ServeMetrics
    batcher: MicroBatcher = field(init=False)
    inference_log: InferenceLog | None = field(init=False, default=None)
    stats: SessionStats = field(default_factory=SessionStats)
    started: float = field(default_factory=time.monotonic)
    draining: bool = False

    def __post_init__(self) -> None:
        settings = self.settings
        self.batcher = MicroBatcher(
            lambda texts: self.predictor.predict_logits(texts, batch_size=settings.predict_batch_size,
                                                        max_batch_tokens=settings.max_batch_tokens),
            max_batch_size=settings.max_batch_size,
            max_wait_ms=settings.max_wait_ms,
            max_queue_texts=settings.max_queue_texts,
            enabled=settings.batching,
            observer=self.metrics.observe_batch,
        )
        if self.settings.log_path is not None:
            self.inference_log = InferenceLog(
                self.settings.log_path,
                log_texts=self.settings.log_texts,
                max_bytes=self.settings.log_max_bytes,
                backups=self.settings.log_backups,
                model_version=self.version,
            )

    @property
    def name(self) -> str:
        return str(self.predictor.meta.get("run_name") or self.predictor.model_dir.name)

    @property
    def labels(self) -> list[str]:
        return self.predictor.labels

    @property
    def temperature(self) -> float | None:
        return self.predictor.calibration_temperature

    @property
    def ready(self) -> bool:
        return not self.draining

    def start(self) -> None:
        self.batcher.start()
        self.metrics.ready.set(1)

    async def predict(self, texts: list[str], calibrate: bool, threshold: float | None) -> PredictOutcome:
        """Predictions for `texts`; the caller has checked that calibrate/threshold suit the model."""
        started = time.perf_counter()
        logits = await self.batcher.submit(texts)  # (len(texts), C)
        temperature = self.temperature if calibrate and self.temperature is not None else 1.0
        predictions = decide(logits, self.labels, temperature=temperature, threshold=threshold)
        latency_ms = (time.perf_counter() - started) * 1000.0
        request_id = uuid.uuid4().hex
        labels = [p.label for p in predictions]
        probs = [p.probs for p in predictions]
        self.metrics.observe_labels(labels)
        self.stats.add(latency_ms, labels, probs)
        if self.inference_log is not None:
            self.inference_log.write(request_id, texts, labels, probs, latency_ms)
        return PredictOutcome(request_id, predictions, latency_ms)

    def info(self) -> dict[str, Any]:
        """The /info body: the model's recorded metadata and the limits this server enforces."""
        meta = self.predictor.meta
        lora = meta.get("lora") or {}
        settings = self.settings
        return {
            "name": self.name,
            "version": self.version,
            "source_run": meta.get("mlflow_run_id"),
            "source": settings.model,
            "kind": meta.get("kind", "classifier"),
            "student_base_model": meta.get("base_model"),
            "teacher_base_model": meta.get("teacher_base_model"),
            "parameters": meta.get("parameters"),
            "lora_rank": lora.get("r") if lora.get("enabled", True) else None,
            "labels": self.labels,
            "device": self.predictor.device,
            "backend": self.predictor.backend_name,
            "quantization": meta.get("quantization") if self.predictor.backend_name == "onnx" else None,
            "model_dir": str(self.predictor.model_dir),
            "threads": settings.num_threads or available_cores(),
            "limits": {
                "max_texts": settings.max_texts,
                "max_text_chars": settings.max_text_chars,
                "max_body_bytes": settings.max_body_bytes,
                "max_tokens": self.predictor.max_length,
                "max_batch_size": settings.max_batch_size,
                "max_wait_ms": settings.max_wait_ms,
                "max_batch_tokens": settings.max_batch_tokens,
                "max_queue_texts": settings.max_queue_texts,
                "batching": settings.batching,
            },
            "calibration_temperature": self.temperature,
            "calibration": meta.get("calibration"),
            "default_threshold": 0.5 if len(self.labels) == 2 else None,
            "metrics": meta.get("metrics"),
        }

    async def shutdown(self) -> None:
        """Drain queued requests, flush the log, and record the session in MLflow when asked."""
        self.draining = True
        self.metrics.ready.set(0)
        await self.batcher.close()
        if self.inference_log is not None:
            self.inference_log.close()
        if self.settings.mlflow_session:
            await asyncio.to_thread(self._record_session)  # a remote tracking server may be slow

    def _record_session(self) -> None:
        started = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        params = {
            "model": self.settings.model,
            "model_name": self.name,
            "model_version": self.version,
            "backend": self.predictor.backend_name,
            "device": self.predictor.device,
            "batching": str(self.settings.batching),
            "max_batch_size": str(self.settings.max_batch_size),
            "max_wait_ms": str(self.settings.max_wait_ms),
        }
        try:
            run_id = record_session_in_mlflow(
                self.stats.summary(self.labels),
                params,
                tracking_uri=resolve_tracking_uri(self.settings.mlflow_tracking_uri),
                experiment=self.settings.mlflow_experiment,
                run_name=f"serve-{self.name}-{started}",
            )
        except Exception:  # a tracking outage must not turn a clean shutdown into a crash
            logger.exception("could not record the serving session in MLflow")
            return
        logger.info("serving session recorded in MLflow run %s", run_id)
