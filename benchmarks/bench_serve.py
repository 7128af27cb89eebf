"""Serving benchmark, runnable without installing the CLI entry point: same as `llmneo bench-serve`.

    python benchmarks/bench_serve.py outputs/demo --concurrency 32 --requests 2000

Starts `uvicorn llmneo.serve.app:app` in a separate process per mode (batching on, batching off,
one client) and drives it from this process; prints p50/p95/p99 latency, throughput and errors,
and writes outputs/bench-serve/results.json.
"""

import sys

from llmneo.cli import app

if __name__ == "__main__":
    app(["bench-serve", *sys.argv[1:]])
