"""Serving benchmark, runnable without installing the CLI entry point: same as `llmneo bench-serve`.

    python benchmarks/bench_serve.py outputs/demo

Measures the backend alone (batch 2 latency, batch 32 sentences/s), then `uvicorn llmneo.serve.app:app`
in a separate process under 1, 8 and 32 clients driven from this process, then the backend again;
prints each level's sentences/s as a share of the backend's batch 32, p50/p99 latency and errors, and
writes outputs/bench-serve/results.json. Figures measured on this project's machine: serving.md here.
"""

import sys

from llmneo.cli import app

if __name__ == "__main__":
    app(["bench-serve", *sys.argv[1:]])
