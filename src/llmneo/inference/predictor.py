"""The Predictor: one inference layer for `predict`, `evaluate`, the server and the benchmark.

The Predictor owns what every backend shares: the verbalizer template, tokenisation with the
folder's fast tokenizer (all texts in one call), sorting texts by token count so batches carry
little padding, cutting them into forward passes bounded by a batch size and a token budget, and
putting the results back in the caller's order. A backend only turns token arrays into class logits.

An ONNX folder is read with `tokenizers` alone (`JsonTokenizer`), so an ONNX Predictor never imports
torch or transformers; a torch folder uses transformers' tokenizer, which wraps the same Rust code.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from llmneo.inference.tokenizer import JsonTokenizer
from llmneo.maths.decide import Prediction, decide, softmax
from llmneo.modelfolder import load_tokenizer, read_model_meta, resolve_model_dir
from llmneo.progress import progress as show_progress

__all__ = ["Backend", "Predictor"]


class Backend(Protocol):
    name: str
    device: str

    def logits(self, encoded: dict[str, np.ndarray]) -> np.ndarray:
        """(B, T) token arrays -> (B, C) class logits."""
        ...


def _forward_passes(lengths: Sequence[int], batch_size: int, max_tokens: int | None) -> list[np.ndarray]:
    """Indices of each forward pass: ascending token count, at most `batch_size` rows and (rows x
    longest row) padded tokens within `max_tokens`; a text over the budget on its own still runs, alone."""
    order = np.argsort(lengths, kind="stable")
    passes: list[np.ndarray] = []
    start = 0
    while start < len(order):
        end = start + 1
        while (end < len(order) and end - start < batch_size
               and (max_tokens is None or (end - start + 1) * lengths[order[end]] <= max_tokens)):
            end += 1
        passes.append(order[start:end])
        start = end
    return passes


def _load_backend(folder: Path, meta: dict[str, Any], backend: str, device: str, num_threads: int | None,
                  mixed_precision: str = "no", onnx_spinning: bool = True) -> Backend:
    stored = meta.get("backend", "torch")
    wanted = stored if backend == "auto" else backend
    if wanted != stored:
        hint = (f"; give the run folder after `llmneo export`, or an export folder ({folder.parent}/export/...)"
                if wanted == "onnx" else "; give the run folder or its student/ for the torch model")
        raise ValueError(f"{folder}: holds a {stored} model, backend {wanted!r} was asked for{hint}")
    if wanted == "onnx":
        from llmneo.inference.onnx_backend import OnnxBackend

        return OnnxBackend(folder, meta, num_threads=num_threads, spinning=onnx_spinning)
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
             num_threads: int | None = None, mixed_precision: str = "no", onnx_spinning: bool = True) -> Predictor:
        """`mixed_precision: bf16` autocasts a torch backend (fp32 weights), as training does;
        `onnx_spinning=False`: ONNX Runtime's idle threads sleep (see `session_options`)."""
        folder = resolve_model_dir(path)
        meta = read_model_meta(folder)
        loaded = _load_backend(folder, meta, backend, device, num_threads, mixed_precision, onnx_spinning)
        if loaded.name == "onnx" and JsonTokenizer.available(folder):
            tokenizer: Any = JsonTokenizer.from_folder(folder, int(meta.get("max_length", 128)))
        else:
            tokenizer = load_tokenizer(folder)
        return cls(folder, meta, loaded, tokenizer)

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

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Unpadded token ids of every text (template applied, truncated), in one tokenizer call."""
        formatted = [self.format(t) for t in texts]
        if isinstance(self.tokenizer, JsonTokenizer):
            return self.tokenizer.token_ids(formatted)
        return self.tokenizer(formatted, truncation=True, max_length=self.max_length)["input_ids"]

    def pad(self, rows: Sequence[Sequence[int]]) -> dict[str, np.ndarray]:
        """(B, T) int64 `input_ids` and `attention_mask`, padded on the right to the longest row.

        Only these two: every exported graph takes them, and BERT's token_type_ids are all zeros
        for one sentence, which is what the model assumes when they are left out.
        """
        width = max(len(row) for row in rows)
        input_ids = np.full((len(rows), width), self.tokenizer.pad_token_id, dtype=np.int64)
        attention_mask = np.zeros((len(rows), width), dtype=np.int64)
        for index, row in enumerate(rows):
            input_ids[index, :len(row)] = row
            attention_mask[index, :len(row)] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    def encode(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        return self.pad(self.token_ids(texts))

    def predict_logits(self, texts: Sequence[str], batch_size: int = 32, progress: str | None = None,
                       max_batch_tokens: int | None = None) -> np.ndarray:
        """(N, C) logits. Texts are tokenised at once, then sorted by length so each pass pads little.

        `max_batch_tokens` bounds a pass's padded tokens (rows x longest row), so a few long texts do not
        make a slow, memory-hungry pass of `batch_size` rows. `progress`: a progress bar's description.
        """
        if len(texts) == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        rows = self.token_ids(texts)
        logits = np.empty((len(texts), len(self.labels)), dtype=np.float32)
        passes = _forward_passes([len(row) for row in rows], batch_size, max_batch_tokens)
        if progress:
            passes = show_progress(passes, progress, unit="batch")
        for index in passes:
            logits[index] = self.backend.logits(self.pad([rows[i] for i in index]))
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
