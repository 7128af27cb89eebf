"""`llmneo bench`: the distillation trade-off measured on this machine, in one run.

For the teacher (PyTorch fp32, and ONNX fp32 for a same-backend comparison) and the student in
PyTorch fp32, ONNX Runtime fp32 and int8 (exports are made when missing) it measures dev accuracy
and F1, parameters, weights on disk, peak resident memory, latency p50/p99 at batch 1 and
throughput at batch 32, plus the machine's fp32 matmul peak and each model's achieved GFLOP/s as a
share of it (`llmneo.flops` says how FLOPs are counted).

Every model is measured in fresh child processes, so one model's memory peak, thread pools and
warmed caches never leak into another's figures: one child for accuracy, throughput and memory,
another for batch-1 latency (which may use fewer threads: a single short sentence is too little
work to split across cores, and thread hand-offs cost more than they save).
Results go to `bench.md` (table and target check), `bench.png` and `bench.json`, and to MLflow when
tracking is on. The measuring runs in children; formatting and target checks are pure functions.
"""

from __future__ import annotations

import json
import multiprocessing
import resource
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "BenchResult",
    "ModelSpec",
    "Target",
    "bench",
    "bench_figure",
    "check_targets",
    "measure_accuracy_throughput",
    "measure_latency",
    "render_markdown",
]

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
    f1: float
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


@dataclass
class Target:
    name: str
    measured: str
    passed: bool


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
        return int(sum(p.numel() for p in predictor.backend.model.parameters()))
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


def _load_predictor(spec: ModelSpec, num_threads: int | None) -> tuple[Any, float]:
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

    from llmneo.export import weights_size
    from llmneo.flops import batches_flops
    from llmneo.metrics import classification_metrics, softmax

    predictor.predict_logits(texts[:THROUGHPUT_BATCH * 2], batch_size=THROUGHPUT_BATCH)  # warm-up
    inner = predictor.backend
    with tqdm(total=len(texts), desc=f"{spec.name}: batch {THROUGHPUT_BATCH}", unit="text") as progress:
        counting = predictor.backend = _CountingBackend(inner, progress)
        try:
            start = time.perf_counter()
            logits = predictor.predict_logits(texts, batch_size=THROUGHPUT_BATCH)
            seconds = time.perf_counter() - start
        finally:
            predictor.backend = inner
    metrics = classification_metrics(np.asarray(labels), softmax(logits))
    flops = batches_flops(_model_config(Path(spec.folder)), counting.shapes)
    return {"accuracy": metrics["accuracy"], "f1": metrics["f1"], "parameters": _parameters(predictor),
            "size_mb": weights_size(Path(spec.folder)) / 1e6, "peak_rss_mb": _peak_rss_mb(),
            "throughput": len(texts) / seconds, "gflop_per_example": flops / len(texts) / 1e9,
            "achieved_gflops": flops / seconds / 1e9}


def measure_latency(predictor: Any, spec: ModelSpec, texts: list[str]) -> dict[str, float]:
    """Each dev sentence alone, end to end: tokenise, forward, logits back in numpy."""
    from tqdm import tqdm

    for text in texts[:10]:  # warm-up: lazy allocations, kernel selection
        predictor.predict_logits([text])
    seconds = []
    for text in tqdm(texts, desc=f"{spec.name}: batch 1", unit="text"):
        start = time.perf_counter()
        predictor.predict_logits([text], batch_size=1)
        seconds.append(time.perf_counter() - start)
    return {"latency_p50_ms": float(np.percentile(seconds, 50) * 1e3),
            "latency_p99_ms": float(np.percentile(seconds, 99) * 1e3)}


def _child_batched(spec: ModelSpec, texts: list[str], labels: list[int], num_threads: int | None,
                   with_latency: bool) -> dict[str, Any]:
    """Child-process entry: accuracy, throughput and memory (and latency when it shares the threads)."""
    predictor, baseline = _load_predictor(spec, num_threads)
    result = measure_accuracy_throughput(predictor, spec, texts, labels)
    result["model_rss_mb"] = result["peak_rss_mb"] - baseline
    if with_latency:
        result.update(measure_latency(predictor, spec, texts))
    return result


def _child_latency(spec: ModelSpec, texts: list[str], num_threads: int | None) -> dict[str, float]:
    predictor, _ = _load_predictor(spec, num_threads)
    return measure_latency(predictor, spec, texts)


def _in_fresh_process(function: Callable[..., Any], *args: Any) -> Any:
    """Run `function(*args)` in a newly spawned interpreter, so its memory peak is its own."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def _peak_in_child(size: int, num_threads: int | None) -> dict[str, float]:
    """Matmul GFLOP/s per library at one thread and at `num_threads` (all cores by default), best of each.

    One thread is tried as well because on a busy machine all-core runs wait on descheduled threads:
    the peak is the most the machine was seen to do.
    """
    import os

    from llmneo.flops import matmul_peak_gflops

    best: dict[str, float] = {}
    for threads in sorted({1, num_threads or os.cpu_count() or 1}):
        for library, gflops in matmul_peak_gflops(size=size, num_threads=threads).items():
            best[library] = max(best.get(library, 0.0), gflops)
    return best


def _measure(spec: ModelSpec, texts: list[str], labels: list[int], threads: int | None,
             latency_threads: int | None) -> BenchResult:
    shared = latency_threads == threads  # one child does both when the thread settings agree
    batched = _in_fresh_process(_child_batched, spec, texts, labels, threads, shared)
    if not shared:
        batched.update(_in_fresh_process(_child_latency, spec, texts, latency_threads))
    return BenchResult(name=spec.name, role=spec.role, backend=spec.backend, precision=spec.precision,
                       peak_share=float("nan"), **batched)  # share set once the peak is known


def _onnx_spec(name: str, role: str, source: Path, folder: Path, quantize: str, data_path: Path,
               notes: list[str]) -> ModelSpec | None:
    """The exported model at `folder`, exported from `source` first when missing; None when refused."""
    from llmneo.export import ExportRefused, export_model

    if not (folder / "llmneo_model.json").is_file():
        print(f"{folder}: missing, exporting now")
        try:
            export_model(source, quantize=quantize, out_dir=folder, data_path=data_path)
        except ExportRefused as refused:
            notes.append(f"{name} not measured: {refused}")
            return None
    return ModelSpec(name, role, str(folder), "onnx", "int8" if quantize == "int8" else "fp32")


def _model_specs(run_dir: Path, data_path: Path, notes: list[str]) -> list[ModelSpec]:
    """Teacher in torch and ONNX fp32 (the same-backend comparison), student in torch, ONNX fp32 and int8."""
    from llmneo.export import default_export_dir

    specs: list[ModelSpec | None] = []
    teacher = run_dir / "teacher"
    if (teacher / "llmneo_model.json").is_file():
        specs += [ModelSpec("teacher torch fp32", "teacher", str(teacher), "torch", "fp32"),
                  _onnx_spec("teacher onnx fp32", "teacher", teacher, run_dir / "export" / "teacher-onnx-fp32",
                             "none", data_path, notes)]
    else:
        notes.append(f"{teacher}: no teacher model folder, teacher not measured")
    specs.append(ModelSpec("student torch fp32", "student", str(run_dir / "student"), "torch", "fp32"))
    for quantize, precision in (("none", "fp32"), ("int8", "int8")):
        specs.append(_onnx_spec(f"student onnx {precision}", "student", run_dir,
                                default_export_dir(run_dir, quantize), quantize, data_path, notes))
    return [spec for spec in specs if spec is not None]


def check_targets(results: list[BenchResult], peak_gflops: float) -> list[Target]:
    """The issue's four targets, as ratios within this one run."""
    by_name = {r.name: r for r in results}
    eager = by_name.get("student torch fp32")
    students = [r for r in results if r.role == "student"]
    targets: list[Target] = []
    ratios = {backend: by_name[f"student {backend}"].throughput / by_name[f"teacher {backend}"].throughput
              for backend in ("torch fp32", "onnx fp32")
              if f"student {backend}" in by_name and f"teacher {backend}" in by_name}
    if ratios:
        targets.append(Target("student throughput >= 3x teacher on the same backend (batch 32)",
                              ", ".join(f"{backend}: {ratio:.2f}x" for backend, ratio in ratios.items()),
                              max(ratios.values()) >= 3))
    if eager and students:
        fastest = min(students, key=lambda r: r.latency_p50_ms)
        speedup = eager.latency_p50_ms / fastest.latency_p50_ms
        change = (fastest.accuracy - eager.accuracy) * 100  # accuracy points, + when the fast one is better
        # "Within 0.5 points" guards against a loss: a backend that happens to score higher passes.
        targets.append(Target(f"best backend ({fastest.name}) >= 5x faster than torch eager fp32 at batch 1, "
                              "accuracy at most 0.5 points below eager",
                              f"{speedup:.2f}x, accuracy {change:+.2f} points vs eager",
                              speedup >= 5 and change >= -0.5))
        targets.append(Target("best single-sentence p50 < 5 ms", f"{fastest.latency_p50_ms:.2f} ms ({fastest.name})",
                              fastest.latency_p50_ms < 5))
    if students:
        busiest = max(students, key=lambda r: r.throughput)
        measured = f"{busiest.achieved_gflops:.1f} / {peak_gflops:.1f} GFLOP/s = {busiest.peak_share:.0%} ({busiest.name})"
        fp32 = [r for r in students if r.precision == "fp32" and r is not busiest]
        if busiest.precision == "int8" and fp32:  # int8 runs on integer units: give the like-for-like figure too
            best_fp32 = max(fp32, key=lambda r: r.throughput)
            measured += f"; best fp32: {best_fp32.peak_share:.0%} ({best_fp32.name})"
        targets.append(Target("best batched backend >= 40% of the fp32 matmul peak", measured,
                              busiest.peak_share >= 0.4))
    return targets


_COLUMNS: list[tuple[str, Callable[[BenchResult], str]]] = [
    ("model", lambda r: r.name),
    ("dev acc", lambda r: f"{r.accuracy:.4f}"),
    ("dev F1", lambda r: f"{r.f1:.4f}"),
    ("params (M)", lambda r: f"{r.parameters / 1e6:.2f}"),
    ("weights (MB)", lambda r: f"{r.size_mb:.1f}"),
    ("peak RSS (MB)", lambda r: f"{r.peak_rss_mb:.0f}"),
    ("model RSS (MB)", lambda r: f"{r.model_rss_mb:.0f}"),
    ("p50 ms (b=1)", lambda r: f"{r.latency_p50_ms:.2f}"),
    ("p99 ms (b=1)", lambda r: f"{r.latency_p99_ms:.2f}"),
    ("ex/s (b=32)", lambda r: f"{r.throughput:.1f}"),
    ("GFLOP/ex", lambda r: f"{r.gflop_per_example:.3f}"),
    ("GFLOP/s", lambda r: f"{r.achieved_gflops:.1f}"),
    ("% of peak", lambda r: f"{r.peak_share:.0%}"),
]


def render_markdown(results: list[BenchResult], peak_gflops: float, targets: list[Target],
                    setup: dict[str, Any], notes: list[str]) -> str:
    """The benchmark as markdown: setup line, one row per model, the target check, notes."""
    lines = ["# llmneo bench", "",
             ", ".join(f"{key}: {value}" for key, value in setup.items()) + f", fp32 matmul peak: "
             f"{peak_gflops:.1f} GFLOP/s", "",
             "| " + " | ".join(name for name, _ in _COLUMNS) + " |",
             "|" + "|".join("---" for _ in _COLUMNS) + "|"]
    lines += ["| " + " | ".join(cell(r) for _, cell in _COLUMNS) + " |" for r in results]
    lines += ["", "## Targets", ""]
    lines += [f"- [{'x' if t.passed else ' '}] {t.name}: {t.measured} ({'met' if t.passed else 'MISSED'})"
              for t in targets]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def bench_figure(results: list[BenchResult], peak_gflops: float):
    """Latency, throughput, share of the matmul peak and accuracy side by side (a matplotlib Figure)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(14, 4), layout="constrained")
    axes = figure.subplots(1, 4)
    names = [r.name.replace(" ", "\n", 1) for r in results]
    colours = ["tab:gray" if r.role == "teacher" else "tab:blue" if r.backend == "torch" else "tab:green"
               for r in results]
    panels = [("p50 latency, batch 1 (ms)", [r.latency_p50_ms for r in results]),
              ("throughput, batch 32 (examples/s)", [r.throughput for r in results]),
              (f"share of fp32 matmul peak ({peak_gflops:.0f} GFLOP/s)", [100 * r.peak_share for r in results]),
              ("dev accuracy (%)", [100 * r.accuracy for r in results])]
    for axis, (title, values) in zip(axes, panels):
        bars = axis.bar(names, values, color=colours)
        axis.bar_label(bars, fmt="%.1f", fontsize=8)
        axis.set_title(title, fontsize=10)
        axis.tick_params(axis="x", labelsize=7)
    return figure


def _log_to_mlflow(tracking: Any, run_name: str, out_dir: Path, results: list[BenchResult],
                   peak_gflops: float) -> str:
    """One MLflow run `<name>-bench` holding every figure and the three files; returns its id.

    Uses the client with an explicit run id, as `llmneo.tracking` does, and its store defaults.
    """
    import os

    from mlflow import MlflowClient
    from mlflow.entities import Metric

    from llmneo.tracking import default_artifact_root, default_tracking_uri

    uri = tracking.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(tracking.experiment)
    local = uri.startswith("sqlite:") or "://" not in uri
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(
        tracking.experiment, artifact_location=default_artifact_root() if local else None)
    run = client.create_run(experiment_id, run_name=f"{run_name}-bench", tags={"llmneo.stage": "bench"})
    now = int(time.time() * 1000)
    metrics = [Metric("bench.matmul_peak_gflops", peak_gflops, now, 0)]
    for result in results:
        prefix = "bench." + result.name.replace(" ", "_")
        metrics += [Metric(f"{prefix}.{key}", float(value), now, 0) for key, value in asdict(result).items()
                    if isinstance(value, (int, float))]
    client.log_batch(run.info.run_id, metrics=metrics)
    for name in ("bench.md", "bench.png", "bench.json"):
        client.log_artifact(run.info.run_id, str(out_dir / name), artifact_path="bench")
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def resolve_inputs(run_dir: Path | None, config: Any | None) -> tuple[Path, Path, Any | None]:
    """(run folder, dev file, config or None) from `--config` or a run folder's saved config.yaml."""
    from llmneo.config import default_data_dir, load_config

    if config is None and run_dir is not None and (Path(run_dir) / "config.yaml").is_file():
        config = load_config(Path(run_dir) / "config.yaml")
    if run_dir is None:
        if config is None:
            raise ValueError("bench needs a run folder or --config")
        run_dir = config.run_dir
    if config is None or config.data.source == "hub":
        return Path(run_dir), Path(default_data_dir()) / "dev.tsv", config
    data = config.data
    dev = Path(data.glue_dir) / "dev.tsv" if data.source == "glue_dir" else Path(data.eval_file or "")
    if data.source == "files" and not data.eval_file:
        raise ValueError("data.eval_file: bench needs a dev file and the config names none")
    return Path(run_dir), dev, config


def bench(run_dir: str | Path, data_path: str | Path, out_dir: str | Path | None = None,
          max_examples: int | None = None, num_threads: int | None = None, latency_threads: int | None = 1,
          tracking: Any = None, run_name: str | None = None, peak_size: int = 2048) -> list[BenchResult]:
    """Measure every model of a run folder and write bench.md, bench.png and bench.json.

    `tracking`: a `llmneo.config.TrackingConfig`; when enabled, the results go to MLflow as well.
    """
    from llmneo.data import read_labeled_file
    from llmneo.models import read_model_meta
    from llmneo.plots import png_bytes

    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir else run_dir
    student = run_dir / "student"
    if not (student / "llmneo_model.json").is_file():
        raise FileNotFoundError(f"{run_dir}: not a run folder (no student/llmneo_model.json)")
    data = read_labeled_file(data_path, read_model_meta(student)["labels"])
    count = min(len(data), max_examples) if max_examples else len(data)
    texts, labels = data.texts[:count], data.labels[:count]
    notes: list[str] = []
    specs = _model_specs(run_dir, Path(data_path), notes)
    # The peak is measured before and after the models and the better kept: on a shared machine
    # one measurement may fall on a busy moment, and a ceiling set too low flatters every model.
    first_peaks = _in_fresh_process(_peak_in_child, peak_size, num_threads)
    results = [_measure(spec, texts, labels, num_threads, latency_threads) for spec in specs]
    last_peaks = _in_fresh_process(_peak_in_child, peak_size, num_threads)
    peaks = {library: max(first_peaks[library], last_peaks[library]) for library in first_peaks}
    peak = max(peaks.values())
    print(f"fp32 matmul peak: {peak:.1f} GFLOP/s ({', '.join(f'{k} {v:.1f}' for k, v in peaks.items())})")
    for result in results:
        result.peak_share = result.achieved_gflops / peak
    targets = check_targets(results, peak)
    setup = {"dev texts": count, "data": str(data_path), "threads (batch 32)": num_threads or "all cores",
             "threads (batch 1)": latency_threads or "all cores", "cpu cores": multiprocessing.cpu_count(),
             "matmul GFLOP/s by library": ", ".join(f"{k} {v:.1f}" for k, v in peaks.items())}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "bench.md").write_text(render_markdown(results, peak, targets, setup, notes))
    (out_dir / "bench.png").write_bytes(png_bytes(bench_figure(results, peak)))
    (out_dir / "bench.json").write_text(json.dumps(
        {"setup": setup, "matmul_peak_gflops": peak, "results": [asdict(r) for r in results],
         "targets": [asdict(t) for t in targets], "notes": notes}, indent=2))
    if tracking is not None and tracking.enabled:
        run_id = _log_to_mlflow(tracking, run_name or run_dir.name, out_dir, results, peak)
        print(f"logged to MLflow run {run_id}")
    return results
