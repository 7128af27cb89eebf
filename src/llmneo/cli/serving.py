"""The serving commands: serve, bench-serve."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from llmneo.cli import (
    MODEL_HELP,
    ModelArgument,
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
ServeBackend = Annotated[str | None, typer.Option(
    help="auto, torch or onnx (config serve.backend, default auto: a run folder's checked int8 export, "
         "then fp32, then torch).")]
MaxBatch = Annotated[int | None, typer.Option(help="Most texts per forward pass (config serve.max_batch_size, default 32).")]
MaxWait = Annotated[float | None, typer.Option(
    help="How long a request that finds the model idle waits for others, ms (config serve.max_wait_ms, default 0).")]
NumThreads = Annotated[int | None, typer.Option(
    help="Backend threads per worker (env LLMNEO_NUM_THREADS; default: the cores, divided among the workers).")]


@app.command()
def serve(
    model: Annotated[str | None, typer.Argument(
        metavar="[MODEL]", help=f"{MODEL_HELP} Default with --config: its run folder.", show_default=False)] = None,
    config: OptionalConfigOption = None,
    set_: SetOption = None,
    host: ServeHost = None,
    port: Annotated[int | None, typer.Option(help="Port (config serve.port, default 8000).")] = None,
    workers: Annotated[int, typer.Option(min=1, help=(
        "Server processes, each with its own model and cores/N threads. Measured on 2 busy cores: 2 workers "
        "served more sentences/s under load, 1 worker answered a lone request faster and holds one model "
        "(benchmarks/serving.md)."))] = 1,
    backend: ServeBackend = None,
    num_threads: NumThreads = None,
    max_queue_texts: Annotated[int | None, typer.Option(
        help="Most texts waiting for the model; beyond it 503 with Retry-After (env LLMNEO_MAX_QUEUE_TEXTS).")] = None,
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
    access_log: Annotated[bool, typer.Option(
        "--access-log/--no-access-log", help="uvicorn's line per request (off: it costs the event loop).")] = False,
) -> None:
    """Serve the model over HTTP (FastAPI): /predict, /info, /health, /metrics, a web page at /, /docs.

    Settings, first found wins: these options, the `serve` keys written in --config's YAML (or
    --set), LLMNEO_* variables (LLMNEO_API_KEY turns on the Bearer key), the defaults.
    """
    from llmneo.serve.launch import run_server

    cfg = load(config, set_, checks="sections") if config else None
    if model is None:
        if cfg is None:
            fail("serve needs MODEL or --config")
        model = str(cfg.run_dir)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    settings = _serve_settings(model, cfg.serve.model_dump(exclude_unset=True) if cfg else None, host=host,
                               port=port, backend=backend, num_threads=num_threads, max_queue_texts=max_queue_texts,
                               max_texts=max_texts, max_text_chars=max_text_chars,
                               max_batch_size=max_batch_size, max_wait_ms=max_wait_ms, batching=batching,
                               log_path=log_path, log_texts=log_texts, mlflow_session=mlflow_session)
    with user_errors():
        run_server(settings, workers=workers, access_log=access_log)


@app.command("bench-serve")
def bench_serve(
    model: ModelArgument,
    clients: Annotated[list[int] | None, typer.Option(
        "--clients", min=1, help="Concurrent clients of each load level (repeatable; default 1, 8, 32).")] = None,
    requests: Annotated[int, typer.Option(min=1, help="Requests per load level of more than one client.")] = 5000,
    single_requests: Annotated[int, typer.Option(min=1, help="Requests of the one-client level.")] = 500,
    texts_per_request: Annotated[int, typer.Option(min=1, help="Texts in each request.")] = 2,
    data: Annotated[Path | None, typer.Option(help="TSV with a 'sentence' column (default SST-2 dev).")] = None,
    backend: ServeBackend = None,
    workers: Annotated[int, typer.Option(min=1, help="Server processes, cores/N threads each.")] = 1,
    num_threads: NumThreads = None,
    max_batch_size: MaxBatch = None,
    max_wait_ms: MaxWait = None,
    max_batch_tokens: Annotated[int | None, typer.Option(
        help="Most padded tokens per forward pass (env LLMNEO_MAX_BATCH_TOKENS, default 512).")] = None,
    out: Annotated[Path, typer.Option(help="Folder for results.json and the server log.")] = Path("outputs/bench-serve"),
) -> None:
    """The server against its own backend, in one run: backend alone (batch 2 latency, batch 32
    sentences/s), then the server under 1, 8 and 32 clients (sentences/s as a share of batch 32, p50/p99,
    errors), then the backend again."""
    from rich.console import Console
    from rich.table import Table

    from llmneo.bench.serve_load import bench_serve as run_bench
    from llmneo.bench.serve_load import load_texts
    from llmneo.config import default_data_dir

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    settings = _serve_settings(model, backend=backend, num_threads=num_threads, max_batch_size=max_batch_size,
                               max_wait_ms=max_wait_ms, max_batch_tokens=max_batch_tokens)
    with user_errors():
        texts = load_texts(data or Path(default_data_dir()) / "dev.tsv")
        report = run_bench(settings, texts, clients=tuple(clients or (1, 8, 32)), requests=requests,
                           single_requests=single_requests, texts_per_request=texts_per_request, workers=workers,
                           work_dir=out)
    before, after = report["backend_before"], report["backend_after"]
    typer.echo(f"{report['model']}: {report['backend']} backend, {report['workers']} worker(s) x "
               f"{report['threads']} threads. Backend alone "
               f"(before / after the load): batch 2 p50 {before['batch2_p50_ms']:.2f} / {after['batch2_p50_ms']:.2f} ms, "
               f"batch 32 {before['batch32_texts_per_s']:.0f} / {after['batch32_texts_per_s']:.0f} sentences/s")
    table = Table(title=f"bench-serve ({texts_per_request} texts per request)")
    for column in ("clients", "requests", "errors", "p50 ms", "p99 ms", "req/s", "sentences/s",
                   "of batch 32", "texts/pass"):
        table.add_column(column, justify="right")
    for row in report["server"]:
        batch = row["mean_texts_per_pass"]
        table.add_row(str(row["clients"]), f"{row['requests']:.0f}", f"{row['errors']:.0f}", f"{row['p50_ms']:.1f}",
                      f"{row['p99_ms']:.1f}", f"{row['requests_per_s']:.0f}", f"{row['texts_per_s']:.0f}",
                      f"{row['share_of_backend_batch32']:.0%}", f"{batch:.1f}" if batch else "-")
    Console(width=max(Console().width, 120)).print(table)  # never cut the figures on a narrow terminal
    typer.echo(f"results in {out / 'results.json'}")
