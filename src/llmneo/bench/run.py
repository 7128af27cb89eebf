"""`llmneo bench`: the distillation trade-off measured on this machine, in one run.

For the teacher (PyTorch fp32, and ONNX fp32 for a same-backend comparison) and the student in
PyTorch fp32, ONNX Runtime fp32 and int8 (exports are made when missing) it measures dev accuracy
and F1, parameters, weights on disk, peak resident memory, latency p50/p99 at batch 1 and
throughput at batch 32, plus the machine's fp32 matmul peak and each model's achieved GFLOP/s as a
share of it (`llmneo.maths.flops` says how FLOPs are counted).

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
from dataclasses import asdict
from pathlib import Path
from typing import Any

from llmneo.bench.isolate import in_fresh_process, measure_in_children, peak_in_child
from llmneo.bench.measure import BenchResult, ModelSpec
from llmneo.bench.tables import bench_figure, render_markdown
from llmneo.bench.targets import check_targets
from llmneo.modelfolder import META_FILE, has_model_folder, read_model_meta

__all__ = ["ROLES", "bench", "model_specs", "resolve_inputs"]

ROLES = ("teacher", "student")


def _onnx_spec(name: str, role: str, source: Path, folder: Path, quantize: str, data_path: Path,
               notes: list[str], export_settings: Any = None, max_examples: int | None = None,
               made_at: Path | None = None) -> ModelSpec | None:
    """The exported model at `folder`, or, when missing, one exported from `source` at `made_at` (default:
    `folder`) first; None when the export is refused."""
    from llmneo.inference.export import ExportRefused, export_model

    if not has_model_folder(folder):
        folder = made_at or folder
    if not has_model_folder(folder):
        print(f"{folder}: missing, exporting now")
        try:
            export_model(source, quantize=quantize, out_dir=folder, data_path=data_path, settings=export_settings,
                         max_examples=max_examples)
        except ExportRefused as refused:
            notes.append(f"{name} not measured: {refused}")
            return None
    return ModelSpec(name, role, str(folder), "onnx", "int8" if quantize == "int8" else "fp32")


def model_specs(run_dir: Path, data_path: Path, notes: list[str], export_settings: Any = None,
                roles: tuple[str, ...] = ROLES, max_examples: int | None = None,
                export_root: Path | None = None) -> list[ModelSpec]:
    """Teacher in torch and ONNX fp32 (the same-backend comparison), student in torch, ONNX fp32 and int8.

    `roles` leaves a role out: a sweep measures its teacher once, not beside every student. A missing
    export is checked against PyTorch on the same first `max_examples` dev texts the models are measured on,
    and written under `export_root` (default: the run folder; `bench --out` keeps every file it makes there)."""
    from llmneo.inference.export import default_export_dir

    root = export_root or run_dir
    specs: list[ModelSpec | None] = []
    teacher = run_dir / "teacher"
    if "teacher" in roles and has_model_folder(teacher):
        relative = Path("export") / "teacher-onnx-fp32"
        specs += [ModelSpec("teacher torch fp32", "teacher", str(teacher), "torch", "fp32"),
                  _onnx_spec("teacher onnx fp32", "teacher", teacher, run_dir / relative, "none", data_path, notes,
                             export_settings, max_examples, made_at=root / relative)]
    elif "teacher" in roles:
        notes.append(f"{teacher}: no teacher model folder, teacher not measured")
    if "student" in roles:
        specs.append(ModelSpec("student torch fp32", "student", str(run_dir / "student"), "torch", "fp32"))
        for quantize, precision in (("none", "fp32"), ("int8", "int8")):
            relative = default_export_dir(run_dir, quantize).relative_to(run_dir)
            specs.append(_onnx_spec(f"student onnx {precision}", "student", run_dir, run_dir / relative, quantize,
                                    data_path, notes, export_settings, max_examples, made_at=root / relative))
    return [spec for spec in specs if spec is not None]


def _log_to_mlflow(tracking: Any, run_name: str, out_dir: Path, results: list[BenchResult],
                   peak_gflops: float) -> str:
    """One MLflow run `<name>-bench` holding every figure and the three files; returns its id."""
    from llmneo.tracking.store import log_one_shot_run, resolve_tracking_uri

    metrics = {"bench.matmul_peak_gflops": peak_gflops}
    for result in results:
        prefix = "bench." + result.name.replace(" ", "_")
        metrics.update({f"{prefix}.{key}": float(value) for key, value in asdict(result).items()
                        if isinstance(value, (int, float))})
    return log_one_shot_run(resolve_tracking_uri(tracking.tracking_uri), tracking.experiment, f"{run_name}-bench",
                            tags={"llmneo.stage": "bench"}, metrics=metrics,
                            artifacts={out_dir / name: "bench" for name in ("bench.md", "bench.png", "bench.json")})


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
          tracking: Any = None, run_name: str | None = None, peak_size: int = 2048,
          export_settings: Any = None) -> list[BenchResult]:
    """Measure every model of a run folder and write bench.md, bench.png and bench.json.

    `tracking`: a `llmneo.config.TrackingConfig`; when enabled, the results go to MLflow as well.
    `export_settings`: a config's `export` section, for the exports made when missing.
    """
    from llmneo.data import read_labeled_head
    from llmneo.reporting.plots import png_bytes

    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir else run_dir
    student = run_dir / "student"
    if not has_model_folder(student):
        raise FileNotFoundError(f"{run_dir}: not a run folder (no student/{META_FILE})")
    data = read_labeled_head(data_path, read_model_meta(student)["labels"], max_examples)
    texts, labels, count = data.texts, data.labels, len(data)
    notes: list[str] = []
    specs = model_specs(run_dir, Path(data_path), notes, export_settings, max_examples=max_examples,
                        export_root=out_dir)
    # The peak is measured before and after the models and the better kept: on a shared machine
    # one measurement may fall on a busy moment, and a ceiling set too low flatters every model.
    first_peaks = in_fresh_process(peak_in_child, peak_size, num_threads)
    results = [measure_in_children(spec, texts, labels, num_threads, latency_threads) for spec in specs]
    last_peaks = in_fresh_process(peak_in_child, peak_size, num_threads)
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
