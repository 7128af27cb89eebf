"""The benchmark as people read it: the markdown table and the figure (pure)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from llmneo.bench.measure import BenchResult
from llmneo.bench.targets import Target

__all__ = ["bench_figure", "render_markdown"]

_COLUMNS: list[tuple[str, Callable[[BenchResult], str]]] = [
    ("model", lambda r: r.name),
    ("dev acc", lambda r: f"{r.accuracy:.4f}"),
    ("dev F1 (macro)", lambda r: f"{r.f1_macro:.4f}"),
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
