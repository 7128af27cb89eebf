"""The frontier's table and chart from fixed rows (frontier.json as `llmneo sweep` writes it)."""

from __future__ import annotations

from conftest import png_size
from llmneo.reporting.frontier import frontier_figure, frontier_markdown, frontier_table
from llmneo.reporting.plots import png_bytes


def _row(name: str, backend: str, accuracy: float, p50: float, throughput: float, role: str = "student",
         latency_front: bool = False) -> dict:
    return {"name": name, "role": role, "backend": backend, "parameters": 22_700_000, "gflop_per_sentence": 0.5,
            "weights_mb": 90.9, "accuracy": accuracy, "f1_macro": accuracy, "roc_auc": 0.95, "agreement": 0.97,
            "latency_p50_ms": p50, "throughput": throughput, "train_minutes": None if role == "teacher" else 3.0,
            "frontier_latency": latency_front, "frontier_throughput": False}


ROWS = [_row("teacher", "torch fp32", 0.93, 30.0, 50.0, role="teacher", latency_front=True),
        _row("minilm-l3", "onnx int8", 0.88, 2.0, 900.0, latency_front=True),
        _row("minilm-l6-lora", "torch fp32", 0.86, 9.0, 200.0)]


def test_the_table_has_a_row_per_point_and_marks_the_frontier():
    headers, cells = frontier_table(ROWS)
    assert headers[:2] == ["model", "backend"] and "agreement" in headers and "GFLOP/sentence" in headers
    assert cells[0][headers.index("train min")] == "-" and cells[1][headers.index("train min")] == "3.0"
    assert [row[headers.index("frontier")] for row in cells] == ["b=1", "b=1", "-"]
    table = frontier_markdown(ROWS, ["a note"])
    assert table.count("\n| ") == 4 and "| minilm-l3 | onnx int8 | 22.7 |" in table and "- a note" in table


def test_the_chart_renders_both_panels():
    figure = frontier_figure(ROWS)
    assert [axis.get_xscale() for axis in figure.axes] == ["log", "log"]
    assert "p50 latency" in figure.axes[0].get_xlabel() and "batch 32" in figure.axes[1].get_xlabel()
    width, height = png_size(png_bytes(figure))
    assert width == 1200 and height == 500
