"""The sweep's picture and table: dev accuracy against speed, one point per model and backend (pure).

Rows are the dicts of `frontier.json` (written by `llmneo sweep`), so the chart, the markdown table,
the HTML report and MLflow all read one record. Two panels, because the two speeds rank models
differently: p50 latency at batch 1 (log scale, left is better) and sentences/s at batch 32 (log
scale, right is better). The teacher is a black star; the Pareto-optimal points are joined.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from llmneo.maths.frontier import FrontierPoint, Speed, pareto_front

__all__ = ["FRONTIER_COLUMNS", "frontier_figure", "frontier_markdown", "frontier_points", "frontier_table"]

Row = Mapping[str, Any]
_SPEED = {"b=1": "latency", "b=32": "throughput"}
_MARKERS = {"torch fp32": "o", "onnx fp32": "s", "onnx int8": "^"}
_LEGEND = ("frontier: Pareto-optimal at batch 1 (p50 latency) and/or batch 32 (sentences/s); agreement: the "
           "teacher's label (PyTorch) on the same dev texts.")

# (header, cell) for the table; the same columns in frontier.md and in the HTML report.
FRONTIER_COLUMNS: list[tuple[str, Callable[[Row], str]]] = [
    ("model", lambda r: str(r["name"])),
    ("backend", lambda r: str(r["backend"])),
    ("params (M)", lambda r: f"{r['parameters'] / 1e6:.1f}"),
    ("GFLOP/sentence", lambda r: f"{r['gflop_per_sentence']:.3f}"),
    ("weights (MB)", lambda r: f"{r['weights_mb']:.1f}"),
    ("validation acc", lambda r: f"{r['validation_accuracy']:.4f}" if r.get("validation_accuracy") is not None else "-"),
    ("dev acc", lambda r: f"{r['accuracy']:.4f}"),
    ("F1 (macro)", lambda r: f"{r['f1_macro']:.4f}"),
    ("ROC-AUC", lambda r: f"{r['roc_auc']:.4f}"),
    ("agreement", lambda r: f"{r['agreement']:.4f}"),
    ("p50 ms (b=1)", lambda r: f"{r['latency_p50_ms']:.2f}"),
    ("sentences/s (b=32)", lambda r: f"{r['throughput']:.1f}"),
    ("train min", lambda r: f"{r['train_minutes']:.1f}" if r.get("train_minutes") is not None else "-"),
    ("frontier", lambda r: " ".join(s for s in ("b=1", "b=32") if r.get(f"frontier_{_SPEED[s]}")) or "-"),
]


def frontier_points(rows: Sequence[Row], accuracy: str = "accuracy") -> list[FrontierPoint]:
    """Points read at the row's `accuracy` key: dev for the chart, validation for a pick that must not
    be chosen on dev (a teacher row without it is read at dev; the teacher is never picked)."""
    return [FrontierPoint(name=str(r["name"]), backend=str(r["backend"]), role=str(r["role"]),
                          accuracy=float(r[accuracy] if r.get(accuracy) is not None else r["accuracy"]), latency_ms=float(r["latency_p50_ms"]),
                          throughput=float(r["throughput"])) for r in rows]


def frontier_table(rows: Sequence[Row]) -> tuple[list[str], list[list[str]]]:
    """(headers, cells) of the table, in the rows' order."""
    return [name for name, _ in FRONTIER_COLUMNS], [[cell(r) for _, cell in FRONTIER_COLUMNS] for r in rows]


def frontier_markdown(rows: Sequence[Row], notes: Sequence[str] = ()) -> str:
    headers, cells = frontier_table(rows)
    lines = ["# Students: accuracy against speed", "",
             "| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    lines += ["", _LEGEND]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def _panel(axis: Any, points: list[FrontierPoint], speed: Speed, colours: dict[str, str]) -> None:
    def x(point: FrontierPoint) -> float:
        return point.latency_ms if speed == "latency" else point.throughput

    front = pareto_front(points, speed)
    for point in points:
        teacher = point.role == "teacher"
        axis.scatter(x(point), 100 * point.accuracy, s=140 if teacher else 45, zorder=3,
                     marker="*" if teacher else _MARKERS.get(point.backend, "o"),
                     color="black" if teacher else colours[point.name], edgecolors="white", linewidths=0.5)
        if point in front:  # the points worth reading are named; the rest by colour and marker
            axis.annotate(point.label, (x(point), 100 * point.accuracy), fontsize=7, xytext=(5, -3),
                          textcoords="offset points")
    axis.plot([x(p) for p in front], [100 * p.accuracy for p in front], linestyle="--", color="tab:red",
              linewidth=1, zorder=2, label="Pareto frontier")
    axis.set_xscale("log")
    axis.set_xlabel("p50 latency, one sentence (ms, log)" if speed == "latency" else
                    "throughput at batch 32 (sentences/s, log)")
    axis.set_ylabel("dev accuracy (%)")
    axis.grid(alpha=0.3, which="both")


def frontier_figure(rows: Sequence[Row], title: str = "Students: dev accuracy against speed") -> Figure:
    """Two panels (latency at batch 1, throughput at batch 32); teacher a black star, frontier dashed."""
    points = frontier_points(rows)
    figure = Figure(figsize=(12.0, 5.0), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    names = list(dict.fromkeys(p.name for p in points if p.role != "teacher"))
    colours = {name: f"C{index % 10}" for index, name in enumerate(names)}
    for axis, speed in zip(figure.subplots(1, 2), ("latency", "throughput")):
        _panel(axis, points, speed, colours)
    left, right = figure.axes
    models = [left.scatter([], [], marker="o", color=colour, label=name) for name, colour in colours.items()]
    left.legend(handles=models, loc="best", fontsize=7, title="student", title_fontsize=7)
    backends = [left.scatter([], [], marker=m, color="grey", label=b) for b, m in _MARKERS.items()]
    backends.append(left.scatter([], [], marker="*", color="black", s=140, label="teacher"))
    right.legend(handles=[*backends, *left.get_lines()[:1]], loc="best", fontsize=7)
    figure.suptitle(title)
    return figure
