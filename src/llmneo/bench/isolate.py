"""Process isolation: every model is measured in freshly spawned interpreters.

One model's memory peak, thread pools and warmed caches never leak into another's figures: one child
for accuracy, throughput and memory, another for batch-1 latency when it uses other thread settings.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from llmneo.bench.measure import (
    BenchResult,
    ModelSpec,
    load_predictor,
    measure_accuracy_throughput,
    measure_latency,
)

__all__ = ["in_fresh_process", "measure_in_children", "peak_in_child"]


def _child_batched(spec: ModelSpec, texts: list[str], labels: list[int], num_threads: int | None,
                   with_latency: bool) -> dict[str, Any]:
    """Child-process entry: accuracy, throughput and memory (and latency when it shares the threads)."""
    predictor, baseline = load_predictor(spec, num_threads)
    result = measure_accuracy_throughput(predictor, spec, texts, labels)
    result["model_rss_mb"] = result["peak_rss_mb"] - baseline
    if with_latency:
        result.update(measure_latency(predictor, spec, texts))
    return result


def _child_latency(spec: ModelSpec, texts: list[str], num_threads: int | None) -> dict[str, float]:
    predictor, _ = load_predictor(spec, num_threads)
    return measure_latency(predictor, spec, texts)


def in_fresh_process(function: Callable[..., Any], *args: Any) -> Any:
    """Run `function(*args)` in a newly spawned interpreter, so its memory peak is its own."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def peak_in_child(size: int, num_threads: int | None) -> dict[str, float]:
    """Matmul GFLOP/s per library at one thread and at `num_threads` (all cores by default), best of each.

    One thread is tried as well because on a busy machine all-core runs wait on descheduled threads:
    the peak is the most the machine was seen to do.
    """
    import os

    from llmneo.bench.peak import matmul_peak_gflops

    best: dict[str, float] = {}
    for threads in sorted({1, num_threads or os.cpu_count() or 1}):
        for library, gflops in matmul_peak_gflops(size=size, num_threads=threads).items():
            best[library] = max(best.get(library, 0.0), gflops)
    return best


def measure_in_children(spec: ModelSpec, texts: list[str], labels: list[int], threads: int | None,
             latency_threads: int | None) -> BenchResult:
    shared = latency_threads == threads  # one child does both when the thread settings agree
    batched = in_fresh_process(_child_batched, spec, texts, labels, threads, shared)
    if not shared:
        batched.update(in_fresh_process(_child_latency, spec, texts, latency_threads))
    return BenchResult(name=spec.name, role=spec.role, backend=spec.backend, precision=spec.precision,
                       peak_share=float("nan"), **batched)  # share set once the peak is known
