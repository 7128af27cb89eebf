"""The sweep's measurements: each model measured as `llmneo bench` measures it, kept per folder, and
turned into the frontier's rows.

The same spec builder (`model_specs`: exports made when missing, each checked against PyTorch) and
the same fresh child processes (`measure_in_children`) as `llmneo bench`, so a sweep's figures and a
bench's figures are comparable. No matmul peak here: the frontier is about accuracy and speed, and a
peak per student would cost more than some students' measurements. Results are stored beside the
model (`sweep_bench_<role>.json`), stamped with the model folder's metadata time, so a rerun measures only
what changed.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from llmneo.bench.isolate import measure_in_children
from llmneo.bench.measure import BenchResult
from llmneo.bench.run import model_specs
from llmneo.maths.frontier import SPEEDS, pareto_front
from llmneo.maths.metrics import agreement
from llmneo.modelfolder import META_FILE
from llmneo.reporting.frontier import frontier_points

__all__ = ["BenchSettings", "Measured", "bench_file", "frontier_rows", "measure_folder"]


@dataclass
class BenchSettings:
    """How the sweep measures (the options of `llmneo bench` it shares)."""

    max_examples: int | None = None      # first N dev texts (None: all of dev)
    threads: int | None = None           # batch 32 (None: all cores)
    latency_threads: int | None = 1      # batch 1


@dataclass
class Measured:
    name: str                      # "teacher" or the student's name
    results: list[BenchResult]
    notes: list[str]
    train_minutes: float | None = None
    steps: int | None = None
    validation_accuracy: float | None = None  # on the split of train that chose its checkpoint, if carved


def bench_file(folder: Path, roles: tuple[str, ...]) -> Path:
    """Per role: a student kept in the run folder itself is measured apart from the teacher there."""
    return folder / f"sweep_bench_{'_'.join(roles)}.json"


def _stamp(folder: Path, roles: tuple[str, ...]) -> dict[str, int]:
    """When each measured model folder was written: a retrained model is measured again."""
    return {role: (folder / role / META_FILE).stat().st_mtime_ns for role in roles
            if (folder / role / META_FILE).is_file()}


def measure_folder(name: str, folder: Path, roles: tuple[str, ...], texts: list[str], labels: list[int],
                   data_path: Path, settings: BenchSettings, export_settings: Any = None) -> Measured:
    """`roles`' models of a run folder in torch fp32, ONNX fp32 (and int8 for a student), kept if measured."""
    stored = bench_file(folder, roles)
    stamp = _stamp(folder, roles)
    if stored.is_file():
        saved = json.loads(stored.read_text())
        if saved.get("stamp") == stamp and saved.get("n") == len(texts):
            print(f"[sweep] {name}: benchmark kept from an earlier run ({stored})")
            return Measured(name, [BenchResult(**row) for row in saved["results"]],
                            [f"{name}: {note}" for note in saved["notes"]])
    notes: list[str] = []
    specs = model_specs(folder, data_path, notes, export_settings, roles, settings.max_examples)
    results = []
    for spec in specs:
        print(f"[sweep] {name}: measuring {spec.name}")
        results.append(measure_in_children(spec, texts, labels, settings.threads, settings.latency_threads))
    stored.write_text(json.dumps({"stamp": stamp, "n": len(texts), "results": [asdict(r) for r in results],
                                  "notes": notes}))
    return Measured(name, results, [f"{name}: {note}" for note in notes])


def _row(measured: Measured, result: BenchResult, reference: list[int] | None) -> dict[str, Any]:
    same_texts = reference is not None and len(reference) == len(result.predicted)
    return {"name": measured.name, "role": result.role, "backend": f"{result.backend} {result.precision}",
            "parameters": result.parameters, "gflop_per_sentence": result.gflop_per_example,
            "weights_mb": result.size_mb, "accuracy": result.accuracy, "f1_macro": result.f1_macro, "roc_auc": result.roc_auc,
            "agreement": agreement(result.predicted, reference) if same_texts else float("nan"),
            "latency_p50_ms": result.latency_p50_ms, "latency_p99_ms": result.latency_p99_ms,
            "throughput": result.throughput, "train_minutes": measured.train_minutes, "steps": measured.steps,
            "validation_accuracy": measured.validation_accuracy}


def frontier_rows(teacher: Measured | None, students: list[Measured]) -> list[dict[str, Any]]:
    """One row per model and backend, teacher first; agreement is with the teacher in PyTorch on the
    same dev texts; `frontier_latency`/`frontier_throughput` mark the Pareto-optimal rows."""
    everyone = ([teacher] if teacher else []) + students
    reference = next((r.predicted for r in (teacher.results if teacher else []) if r.backend == "torch"), None)
    rows = [_row(measured, result, reference) for measured in everyone for result in measured.results]
    points = frontier_points(rows)
    for speed in SPEEDS:
        front = {point.label for point in pareto_front(points, speed)}
        for row, point in zip(rows, points):
            row[f"frontier_{speed}"] = point.label in front
    return rows
