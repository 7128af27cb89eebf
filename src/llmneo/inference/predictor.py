"""The Predictor: one inference layer for `predict`, `evaluate`, the server and the benchmark.

The Predictor owns what every backend shares: the verbalizer template, tokenisation with the
folder's fast tokenizer, sorting texts by length so batches carry little padding, and putting the
results back in the caller's order. A backend only turns token arrays into class logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from llmneo.maths.decide import Prediction, decide
from llmneo.maths.metrics import softmax
from llmneo.modelfolder import load_tokenizer, read_model_meta, resolve_model_dir

__all__ = ["Backend", "Predictor"]


class Backend(Protocol):
    name: str
    device: str

    def logits(self, encoded: dict[str, np.ndarray]) -> np.ndarray:
        """(B, T) token arrays -> (B, C) class logits."""
        ...


def _load_backend(folder: Path, meta: dict[str, Any], backend: str, device: str, num_threads: int | None,
                  mixed_precision: str = "no") -> Backend:
    stored = meta.get("backend", "torch")
    wanted = stored if backend == "auto" else backend
    if wanted != stored:
        raise ValueError(f"{folder}: holds a {stored} model, backend {wanted!r} was asked for")
    if wanted == "onnx":
        from llmneo.inference.onnx_backend import OnnxBackend

        return OnnxBackend(folder, meta, num_threads=num_threads)
    from llmneo.inference.torch_backend import TorchBackend

    return TorchBackend.from_folder(folder, meta, device=device, num_threads=num_threads,
                                    mixed_precision=mixed_precision)


class Predictor:
    """Texts in, class probabilities out, in the caller's order, whatever the backend."""

    def __init__(self, folder: Path, meta: dict[str, Any], backend: Backend, tokenizer: Any):
        self.model_dir = folder
        self.meta = meta
        self.backend = backend
        self.tokenizer = tokenizer
        self.labels: list[str] = list(meta["labels"])
        self.max_length: int = int(meta.get("max_length", 128))

    @classmethod
    def load(cls, path: str | Path, backend: str = "auto", device: str = "auto",
             num_threads: int | None = None, mixed_precision: str = "no") -> Predictor:
        """`mixed_precision: bf16` autocasts a torch backend (fp32 weights), as training does."""
        folder = resolve_model_dir(path)
        meta = read_model_meta(folder)
        tokenizer = load_tokenizer(folder)
        return cls(folder, meta, _load_backend(folder, meta, backend, device, num_threads, mixed_precision),
                   tokenizer)

    @classmethod
    def from_model(cls, model: Any, tokenizer: Any, meta: dict[str, Any], mixed_precision: str = "no") -> Predictor:
        """Wrap a model already in memory (a live teacher that is never saved as a model folder)."""
        from llmneo.inference.torch_backend import TorchBackend

        device = next(model.parameters()).device
        return cls(Path(meta.get("base_model", ".")), meta, TorchBackend(model, device, mixed_precision), tokenizer)

    @property
    def backend_name(self) -> str:
        return self.backend.name

    @property
    def device(self) -> str:
        return self.backend.device

    def format(self, text: str) -> str:
        return self.meta["template"].format(text=text) if self.meta.get("kind") == "verbalizer" else text

    def encode(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        return dict(self.tokenizer([self.format(t) for t in texts], padding=True, truncation=True,
                                   max_length=self.max_length, return_tensors="np"))

    def predict_logits(self, texts: Sequence[str], batch_size: int = 32, progress: str | None = None) -> np.ndarray:
        """(N, C) logits. Texts are sorted by length so each batch pads to a similar size.

        `progress`: a description to show a progress bar under (long loops such as caching).
        """
        if len(texts) == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        order = np.argsort([len(t) for t in texts], kind="stable")
        logits = np.empty((len(texts), len(self.labels)), dtype=np.float32)
        starts = range(0, len(texts), batch_size)
        if progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc=progress, unit="batch", total=len(starts))
        for start in starts:
            index = order[start:start + batch_size]
            logits[index] = self.backend.logits(self.encode([texts[i] for i in index]))
        return logits

    def predict_proba(self, texts: Sequence[str], temperature: float = 1.0, batch_size: int = 32) -> np.ndarray:
        return softmax(self.predict_logits(texts, batch_size), temperature)

    @property
    def calibration_temperature(self) -> float | None:
        calibration = self.meta.get("calibration") or {}
        return calibration.get("temperature")

    def predict(self, texts: Sequence[str], calibrate: bool = False, threshold: float | None = None,
                batch_size: int = 32) -> list[Prediction]:
        """Labels and probabilities; `threshold` applies to P(last class) and needs two classes."""
        temperature = 1.0
        if calibrate:
            if self.calibration_temperature is None:
                raise ValueError(f"{self.model_dir}: the model has no calibration temperature")
            temperature = self.calibration_temperature
        return decide(self.predict_logits(texts, batch_size), self.labels, temperature, threshold)
