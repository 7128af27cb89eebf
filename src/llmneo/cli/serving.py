"""The serving commands: serve, bench-serve."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from llmneo.cli import (
    OptionalConfigOption,
    SetOption,
    app,
    fail,
    load,
    user_errors,
)


def _serve_settings(model: str, config_values: dict | None = None, **options: object):
    """ServeSettings: options given on the command line, then the keys the config's `serve` section
    sets, then LLMNEO_* variables, then the defaults."""
    from pydantic import ValidationError

    from llmneo.serve.settings import ServeSettings

    given = {key: value for key, value in options.items() if value is not None}
    try:
        return ServeSettings(model=model, **{**(config_values or {}), **given})
    except ValidationError as error:
        first = error.errors()[0]
        fail(f"--{'-'.join(map(str, first['loc'])).replace('_', '-')}: {first['msg']}")


ServeHost = Annotated[str | None, typer.Option(help="Bind address (config serve.host, env LLMNEO_HOST, default 127.0.0.1).")]
ServeBackend = Annotated[str | None, typer.Option(help="auto, torch or onnx (config serve.backend, default auto).")]
MaxBatch = Annotated[int | None, typer.Option(help="Most texts per forward pass (config serve.max_batch_size, default 32).")]
MaxWait = Annotated[float | None, typer.Option(help="Longest wait for a batch to fill, ms (config serve.max_wait_ms, default 5).")]


@app.command()
def serve(
    model: Annotated[str | None, typer.Argument(
        help="Run folder, model folder or MLflow URI (models:/name@champion); default with --config: its run folder.")
    ] = None,
    config: OptionalConfigOption = None,
    set_: SetOption = None,
    host: ServeHost = None,
    port: Annotated[int | None, typer.Option(help="Port (config serve.port, default 8000).")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Server processes, each with its own model.")] = 1,
    backend: ServeBackend = None,
    max_texts: Annotated[int | None, typer.Option(help="Most texts per request (config serve.max_texts).")] = None,
    max_text_chars: Annotated[int | None, typer.Option(
        help="Longest accepted text (config serve.max_text_chars).")] = None,
    max_batch_size: MaxBatch = None,
    max_wait_ms: MaxWait = None,
    batching: Annotated[bool | None, typer.Option("--batching/--no-batching", help="Micro-batching.")] = None,
    log_path: Annotated[Path | None, typer.Option(help="Rotating JSONL prediction log.")] = None,
    log_texts: Annotated[bool | None, typer.Option("--log-texts", help="Log texts, not only hashes.")] = None,
    mlflow_session: Annotated[
        bool | None, typer.Option("--mlflow-session", help="Record the session in MLflow at shutdown.")
    ] = None,
) -> None:
    """Serve the model over HTTP (FastAPI): /predict, /info, /health, /metrics, a web page at /, /docs.

    Settings, first found wins: these options, the `serve` keys written in --config's YAML (or
    --set), LLMNEO_* variables (LLMNEO_API_KEY turns on the Bearer key), the defaults.
    """
    from llmneo.serve.launch import run_server

    cfg = load(config, set_) if config else None
    if model is None:
        if cfg is None:
            fail("serve needs MODEL or --config")
        model = str(cfg.run_dir)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    settings = _serve_settings(model, cfg.serve.model_dump(exclude_unset=True) if cfg else None, host=host,
                               port=port, backend=backend, max_texts=max_texts, max_text_chars=max_text_chars,
                               max_batch_size=max_batch_size, max_wait_ms=max_wait_ms, batching=batching,
                               log_path=log_path, log_texts=log_texts, mlflow_session=mlflow_session)
    with user_errors():
        run_server(settings, workers=workers)


@app.command("bench-serve")
def bench_serve(
    model: Annotated[str, typer.Argument(help="Run folder, model folder or MLflow URI to serve.")],
    concurrency: Annotated[int, typer.Option(min=1, help="Concurrent clients.")] = 32,
    requests: Annotated[int, typer.Option(min=1, help="Requests per mode.")] = 2000,
    texts_per_request: Annotated[int, typer.Option(min=1, help="Texts in each request.")] = 2,
    single_requests: Annotated[int, typer.Option(min=1, help="Requests of the one-client run.")] = 100,
    data: Annotated[Path | None, typer.Option(help="TSV with a 'sentence' column (default SST-2 dev).")] = None,
    backend: ServeBackend = None,
    max_batch_size: MaxBatch = None,
    max_wait_ms: MaxWait = None,
    out: Annotated[Path, typer.Option(help="Folder for results.json and server logs.")] = Path("outputs/bench-serve"),
) -> None:
    """Load-test the server from this process: batching on and off, then one client; p50/p95/p99, req/s."""
    from rich.console import Console
    from rich.table import Table

    from llmneo.bench.serve_load import REFERENCE_MS_PER_TWO_TEXT_REQUEST, load_texts
    from llmneo.bench.serve_load import bench_serve as run_bench
    from llmneo.config import default_data_dir

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    settings = _serve_settings(model, backend=backend, max_batch_size=max_batch_size, max_wait_ms=max_wait_ms)
    with user_errors():
        texts = load_texts(data or Path(default_data_dir()) / "dev.tsv")
        rows = run_bench(settings, texts, concurrency=concurrency, requests=requests,
                         texts_per_request=texts_per_request, single_requests=single_requests, work_dir=out)
    table = Table(title=f"bench-serve {model} ({texts_per_request} texts per request)")
    for column in ("mode", "clients", "requests", "errors", "p50 ms", "p95 ms", "p99 ms", "req/s", "texts/s",
                   "texts/pass"):
        table.add_column(column, justify="right")
    for row in rows:
        batch = row["mean_texts_per_pass"]
        table.add_row(row["mode"], str(row["clients"]), f"{row['requests']:.0f}", f"{row['errors']:.0f}",
                      f"{row['p50_ms']:.1f}", f"{row['p95_ms']:.1f}", f"{row['p99_ms']:.1f}",
                      f"{row['requests_per_s']:.1f}", f"{row['texts_per_s']:.1f}", f"{batch:.1f}" if batch else "-")
    Console(width=max(Console().width, 120)).print(table)  # never cut the figures on a narrow terminal
    typer.echo(f"reference project: {REFERENCE_MS_PER_TWO_TEXT_REQUEST:.0f} ms per two-text request on CPU; "
               f"results in {out / 'results.json'}")
