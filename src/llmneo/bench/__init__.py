"""`llmneo bench` and `llmneo bench-serve`: measuring (``measure``, ``peak``), process isolation
(``isolate``), targets (``targets``), markdown and figure (``tables``), the run (``run``), and the HTTP
load client of the server (``serve_load``)."""

from llmneo.bench.measure import BenchResult, ModelSpec, measure_accuracy_throughput, measure_latency
from llmneo.bench.run import bench, resolve_inputs
from llmneo.bench.tables import bench_figure, render_markdown
from llmneo.bench.targets import Target, check_targets

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
    "resolve_inputs",
]
