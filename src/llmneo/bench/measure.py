"""What one model does on this machine: accuracy, throughput, FLOPs, memory and batch-1 latency.

These functions run inside the child processes of `llmneo.bench.isolate`, one model per process.
"""

from __future__ import annotations

import json
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["THROUGHPUT_BATCH", "BenchResult", "ModelSpec", "load_predictor", "measure_accuracy_throughput",
           "measure_latency"]

THROUGHPUT_BATCH = 32


@dataclass
class ModelSpec:
    name: str          # row label, e.g. "student onnx int8"
    role: str          # teacher | student
    folder: str
    backend: str       # torch | onnx
    precision: str     # fp32 | int8


@dataclass
class BenchResult:
    name: str
    role: str
    backend: str
    precision: str
    accuracy: float
    f1_macro: float
    parameters: int
    size_mb: float
    peak_rss_mb: float         # the measuring process's peak, libraries included
    model_rss_mb: float        # that peak minus the RSS before loading: weights, runtime arenas, tokenizer
    latency_p50_ms: float
    latency_p99_ms: float
    throughput: float          # examples per second at batch 32
    gflop_per_example: float   # mean over dev, padding included
    achieved_gflops: float     # during the batch-32 pass
    peak_share: float          # achieved_gflops / matmul peak
    roc_auc: float = float("nan")
    predicted: list[int] = field(default_factory=list)  # class per dev text: agreement between models


class _CountingBackend:
    """Wraps a backend to record each batch's (B, T) shape, for FLOP counts, and tick a progress bar."""

    def __init__(self, inner: Any, progress: Any):
        self.inner, self.progress = inner, progress
        self.name, self.device = inner.name, inner.device
        self.shapes: list[tuple[int, int]] = []

    def logits(self, encoded: dict[str, np.ndarray]) -> np.ndarray:
        batch, seq_len = encoded["input_ids"].shape
        self.shapes.append((int(batch), int(seq_len)))
        result = self.inner.logits(encoded)
        self.progress.update(batch)
        return result


def _parameters(predictor: Any) -> int:
    if predictor.backend_name == "torch":
        from llmneo.maths.params import total_parameters

        return total_parameters(predictor.backend.model)
    import onnx

    graph = onnx.load(str(predictor.backend.path)).graph
    return int(sum(int(np.prod(init.dims)) for init in graph.initializer))


def _model_config(folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: no config.json, so the model's FLOPs cannot be counted")
    return json.loads(path.read_text())


def _peak_rss_mb() -> float:
    """This process's resident-memory high-water mark, in MiB.

    Linux's `VmHWM` belongs to the address space, which a spawned child gets fresh at exec;
    `getrusage`'s ru_maxrss survives exec and so would report the parent's peak as the child's.
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # other systems: KiB, no exec issue here


def load_predictor(spec: ModelSpec, num_threads: int | None) -> tuple[Any, float]:
    """The predictor, and the resident memory just before it was loaded (libraries imported, no model).

    Both backends (torch, onnxruntime, transformers' auto classes: lazily imported otherwise) are
    imported first, so every model's baseline is the same interpreter and the difference is the
    model's own weights, arenas and activations.
    """
    import psutil
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer  # noqa: F401

    import llmneo.inference.onnx_backend
    import llmneo.inference.torch_backend  # noqa: F401
    from llmneo.inference import Predictor

    baseline = psutil.Process().memory_info().rss / 2**20
    return Predictor.load(spec.folder, backend=spec.backend, num_threads=num_threads), baseline


def measure_accuracy_throughput(predictor: Any, spec: ModelSpec, texts: list[str],
                                labels: list[int]) -> dict[str, Any]:
    """One batch-32 pass over dev gives accuracy, F1, throughput and FLOPs."""
    from tqdm import tqdm

    from llmneo.inference.export import weights_size
    from llmneo.maths.flops import batches_flops
    from llmneo.maths.metrics import classification_metrics, softmax
    from llmneo.progress import is_terminal

    predictor.predict_logits(texts[:THROUGHPUT_BATCH * 2], batch_size=THROUGHPUT_BATCH)  # warm-up
    inner = predictor.backend
    with tqdm(total=len(texts), desc=f"{spec.name}: batch {THROUGHPUT_BATCH}", unit="text",
              disable=not is_terminal()) as progress:
        counting = predictor.backend = _CountingBackend(inner, progress)
        try:
            start = time.perf_counter()
            logits = predictor.predict_logits(texts, batch_size=THROUGHPUT_BATCH)
            seconds = time.perf_counter() - start
        finally:
            predictor.backend = inner
    metrics = classification_metrics(np.asarray(labels), softmax(logits))
    flops = batches_flops(_model_config(Path(spec.folder)), counting.shapes)
    return {"accuracy": metrics["accuracy"], "f1_macro": metrics["f1_macro"], "roc_auc": metrics["roc_auc"],
            "predicted": logits.argmax(axis=1).tolist(), "parameters": _parameters(predictor),
            "size_mb": weights_size(Path(spec.folder)) / 1e6, "peak_rss_mb": _peak_rss_mb(),
            "throughput": len(texts) / seconds, "gflop_per_example": flops / len(texts) / 1e9,
            "achieved_gflops": flops / seconds / 1e9}


def measure_latency(predictor: Any, spec: ModelSpec, texts: list[str]) -> dict[str, float]:
    """Each dev sentence alone, end to end: tokenise, forward, logits back in numpy."""
    from llmneo.progress import progress

    for text in texts[:10]:  # warm-up: lazy allocations, kernel selection
        predictor.predict_logits([text])
    seconds = []
    for text in progress(texts, f"{spec.name}: batch 1", unit="text"):
        start = time.perf_counter()
        predictor.predict_logits([text], batch_size=1)
        seconds.append(time.perf_counter() - start)
    return {"latency_p50_ms": float(np.percentile(seconds, 50) * 1e3),
            "latency_p99_ms": float(np.percentile(seconds, 99) * 1e3)}
