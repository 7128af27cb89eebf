"""One inference layer for `predict`, `evaluate`, the server and the benchmark.

The Predictor owns what every backend shares: the verbalizer template, tokenisation with the
folder's fast tokenizer, sorting texts by length so batches carry little padding, and putting the
results back in the caller's order. A backend only turns token arrays into class logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

__all__ = ["Backend", "Prediction", "Predictor", "resolve_model_dir", "softmax"]

META_FILE = "llmneo_model.json"


class Backend(Protocol):
    name: str
    device: str

    def logits(self, encoded: dict[str, np.ndarray]) -> np.ndarray:
        """(B, T) token arrays -> (B, C) class logits."""
        ...


@dataclass
class Prediction:
    pred: int
    label: str
    probs: list[float]


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    scaled = logits / temperature
    scaled = scaled - scaled.max(axis=-1, keepdims=True)  # stable: exp never overflows
    exp = np.exp(scaled)
    return exp / exp.sum(axis=-1, keepdims=True)


def resolve_model_dir(path: str | Path) -> Path:
    """A model folder as is; a run folder -> its student (then teacher) model folder."""
    path = Path(path)
    for candidate in (path, path / "student", path / "teacher"):
        if (candidate / META_FILE).is_file():
            return candidate
    raise FileNotFoundError(f"{path}: neither an llmneo model folder nor a run folder holding one ({META_FILE})")


def _load_backend(folder: Path, meta: dict[str, Any], backend: str, device: str, num_threads: int | None) -> Backend:
    stored = meta.get("backend", "torch")
    wanted = stored if backend == "auto" else backend
    if wanted != stored:
        raise ValueError(f"{folder}: holds a {stored} model, backend {wanted!r} was asked for")
    if wanted == "onnx":
        from llmneo.inference.onnx_backend import OnnxBackend

        return OnnxBackend(folder, meta, num_threads=num_threads)
    from llmneo.inference.torch_backend import TorchBackend

    return TorchBackend.from_folder(folder, meta, device=device, num_threads=num_threads)


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
             num_threads: int | None = None) -> Predictor:
        import json

        from transformers import AutoTokenizer

        folder = resolve_model_dir(path)
        meta = json.loads((folder / META_FILE).read_text())
        tokenizer = AutoTokenizer.from_pretrained(folder)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        tokenizer.padding_side = "right"  # the verbalizer gathers logits at the last real token
        return cls(folder, meta, _load_backend(folder, meta, backend, device, num_threads), tokenizer)

    @classmethod
    def from_model(cls, model: Any, tokenizer: Any, meta: dict[str, Any]) -> Predictor:
        """Wrap a model already in memory (a live teacher that is never saved as a model folder)."""
        from llmneo.inference.torch_backend import TorchBackend

        device = next(model.parameters()).device
        return cls(Path(meta.get("base_model", ".")), meta, TorchBackend(model, device), tokenizer)

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
        if threshold is not None and len(self.labels) != 2:
            raise ValueError("threshold applies to binary models only")
        probs = self.predict_proba(texts, temperature, batch_size)
        preds = (probs[:, 1] >= threshold).astype(int) if threshold is not None else probs.argmax(axis=1)
        return [Prediction(int(p), self.labels[int(p)], [float(x) for x in row]) for p, row in zip(preds, probs)]
