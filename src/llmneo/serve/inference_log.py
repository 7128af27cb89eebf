"""What the server remembers of its traffic: a rotating JSONL prediction log and a session summary.

Each prediction becomes one JSON line (time, text hash, length, label, probabilities, latency,
model version; the text only when `log_texts` is on). Lines go through a QueueHandler so the event
loop never waits on the disk; a listener thread writes them to a RotatingFileHandler. The session
summary (request count, latency percentiles, label distribution) can be recorded as an MLflow run at
shutdown, so live traffic can be compared with the dev set the model was measured on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import logging.handlers
import queue
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

__all__ = ["InferenceLog", "SessionStats", "record_session_in_mlflow", "text_sha256"]

_MAX_LATENCIES = 1_000_000  # keeps a long session's memory bounded; percentiles use the latest ones


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class InferenceLog:
    """JSONL prediction log with rotation; writes happen on a listener thread."""

    def __init__(self, path: Path, *, log_texts: bool, max_bytes: int, backups: int, model_version: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._log_texts = log_texts
        self._model_version = model_version
        file_handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
        )
        file_handler.setFormatter(logging.Formatter("%(message)s"))
        records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        # A private Logger (not logging.getLogger) so apps in one process never share handlers.
        self._logger = logging.Logger(f"llmneo.serve.inference.{id(self)}", level=logging.INFO)  # noqa: LOG001
        self._logger.addHandler(logging.handlers.QueueHandler(records))
        self._listener = logging.handlers.QueueListener(records, file_handler)
        self._file_handler = file_handler
        self._listener.start()

    def write(
        self, request_id: str, texts: list[str], labels: list[str], probs: list[list[float]], latency_ms: float
    ) -> None:
        now = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        for index, (text, label, row) in enumerate(zip(texts, labels, probs)):
            entry = {
                "time": now,
                "request_id": request_id,
                "index": index,
                "text_sha256": text_sha256(text),
                "length": len(text),
                "label": label,
                "probs": [round(p, 6) for p in row],
                "latency_ms": round(latency_ms, 3),
                "model_version": self._model_version,
            }
            if self._log_texts:
                entry["text"] = text
            self._logger.info(json.dumps(entry, ensure_ascii=False))

    def close(self) -> None:
        """Flush every queued line to disk and release the file."""
        self._listener.stop()
        self._file_handler.close()


@dataclass
class SessionStats:
    """Running totals of one serving session (kept in memory, summarised at shutdown)."""

    started: float = field(default_factory=time.time)
    requests: int = 0
    texts: int = 0
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=_MAX_LATENCIES))
    labels: Counter[str] = field(default_factory=Counter)
    positive_probs_sum: float = 0.0

    def add(self, latency_ms: float, labels: list[str], probs: list[list[float]]) -> None:
        self.requests += 1
        self.texts += len(labels)
        self.latencies_ms.append(latency_ms)
        self.labels.update(labels)
        self.positive_probs_sum += sum(row[-1] for row in probs)

    def summary(self, label_names: list[str]) -> dict[str, float]:
        """Metrics of the session: counts, latency percentiles, share of each predicted label."""
        result: dict[str, float] = {
            "requests": float(self.requests),
            "texts": float(self.texts),
            "duration_s": time.time() - self.started,
        }
        if self.latencies_ms:
            latencies = np.asarray(self.latencies_ms)
            for q in (50, 95, 99):
                result[f"latency_p{q}_ms"] = float(np.percentile(latencies, q))
            result["latency_mean_ms"] = float(latencies.mean())
        for name in label_names:
            result[f"label_share_{name}"] = self.labels[name] / self.texts if self.texts else 0.0
        if self.texts:
            result["mean_prob_last_class"] = self.positive_probs_sum / self.texts
        return result


def record_session_in_mlflow(
    summary: dict[str, float],
    params: dict[str, str],
    *,
    tracking_uri: str,
    experiment: str,
    run_name: str,
) -> str:
    """Write a finished serving session as one MLflow run and return its id.

    Uses MlflowClient rather than the fluent API so it never touches (or ends) an active run of the
    process that embeds the server.
    """
    from llmneo.tracking.store import log_one_shot_run

    return log_one_shot_run(tracking_uri, experiment, run_name, tags={"llmneo.kind": "serving-session"},
                            metrics=summary, params=params)
