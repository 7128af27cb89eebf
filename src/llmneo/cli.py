"""The `llmneo` command line: one typer app, one thin command per pipeline stage.

Commands only parse arguments, turn known errors into one-line messages, and call the stage's
function; the work lives in the stage modules.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, NoReturn

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Distil an LLM into a small, fast classifier.")

# --- core pipeline commands (lead) ---

ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="Experiment YAML (see configs/).")]
OptionalConfigOption = Annotated[Path | None, typer.Option("--config", "-c", help="Experiment YAML (see configs/).")]
SetOption = Annotated[list[str] | None, typer.Option("--set", help="Override: key.sub=value (repeatable).")]
ResumeOption = Annotated[bool, typer.Option("--resume", help="Continue from the last checkpoint.")]
SkipBadRows = Annotated[bool, typer.Option("--skip-bad-rows", help="Drop bad data rows (reported by line).")]


def fail(message: str) -> NoReturn:
    """One line on stderr and exit code 2: what the user must fix, not a traceback."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


@contextmanager
def user_errors() -> Iterator[None]:
    """Known, user-fixable errors become one line; anything else is a bug and keeps its traceback."""
    from llmneo.config import ConfigError
    from llmneo.data import DataError
    from llmneo.training.cache import CacheCorrupt

    try:
        yield
    except (ConfigError, DataError, CacheCorrupt, FileNotFoundError) as error:
        fail(str(error))
    except ValueError as error:
        fail(str(error))


def load(config: Path, overrides: list[str] | None, skip_bad_rows: bool = False):
    from llmneo.config import load_config

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    with user_errors():
        extra = ["data.skip_bad_rows=true"] if skip_bad_rows else []
        return load_config(config, (overrides or []) + extra)


@app.command()
def teacher(config: ConfigOption, set_: SetOption = None, resume: ResumeOption = False,
            skip_bad_rows: SkipBadRows = False) -> None:
    """Prepare the teacher: fine-tune it on the training data unless it is already a task classifier."""
    from llmneo.training.pipeline import run_teacher_stage

    cfg = load(config, set_, skip_bad_rows)
    with user_errors():
        run_teacher_stage(cfg, resume)


@app.command()
def cache(config: ConfigOption, set_: SetOption = None, skip_bad_rows: SkipBadRows = False) -> None:
    """Compute and store the teacher's logits for the training and dev data (resumes if interrupted)."""
    from llmneo.training.pipeline import run_cache_stage

    cfg = load(config, set_, skip_bad_rows)
    with user_errors():
        run_cache_stage(cfg)


@app.command()
def distill(config: ConfigOption, set_: SetOption = None, resume: ResumeOption = False,
            skip_bad_rows: SkipBadRows = False) -> None:
    """Train the student with KD + LoRA from the cached teacher logits."""
    from llmneo.training.pipeline import run_distill_stage

    cfg = load(config, set_, skip_bad_rows)
    with user_errors():
        run_distill_stage(cfg, resume)


@app.command()
def run(config: ConfigOption, set_: SetOption = None, resume: ResumeOption = False,
        skip_bad_rows: SkipBadRows = False) -> None:
    """The whole pipeline: teacher -> cache -> distill -> evaluate, with a summary table."""
    from llmneo.training.pipeline import run_pipeline

    cfg = load(config, set_, skip_bad_rows)
    with user_errors():
        run_pipeline(cfg, resume)


@app.command()
def evaluate(
    model_dir: Annotated[Path, typer.Argument(help="A model folder, run folder or exported folder.")],
    data: Annotated[Path, typer.Option("--data", help="Labelled TSV/CSV/JSONL/Parquet file.")],
    text_column: Annotated[str, typer.Option(help="Column holding the text.")] = "sentence",
    label_column: Annotated[str, typer.Option(help="Column holding the label.")] = "label",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
    backend: Annotated[str, typer.Option(help="auto, torch or onnx.")] = "auto",
    batch_size: Annotated[int, typer.Option(help="Texts per forward pass.")] = 32,
    skip_bad_rows: SkipBadRows = False,
) -> None:
    """Score a saved model on a labelled file: accuracy, precision, recall, F1, ROC-AUC."""
    import numpy as np

    from llmneo.data import describe_bad_rows, read_labeled_file
    from llmneo.inference import Predictor
    from llmneo.maths.metrics import classification_metrics

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    with user_errors():
        predictor = Predictor.load(model_dir, backend=backend)
        rows = read_labeled_file(data, predictor.labels, text_column, label_column, skip_bad_rows)
        if (line := describe_bad_rows(rows)) is not None:
            typer.echo(line, err=True)
        probs = predictor.predict_proba(rows.texts, batch_size=batch_size)
    metrics = classification_metrics(np.asarray(rows.labels), probs)
    if as_json:
        typer.echo(json.dumps(metrics))
        return
    for name, value in metrics.items():
        typer.echo(f"{name:>10}: {value:.4f}" if isinstance(value, float) else f"{name:>10}: {value}")


@app.command()
def predict(
    model_dir: Annotated[Path, typer.Argument(help="A model folder, run folder or exported folder.")],
    texts: Annotated[list[str], typer.Argument(help="Texts to classify.")],
    backend: Annotated[str, typer.Option(help="auto, torch or onnx.")] = "auto",
    calibrate: Annotated[bool, typer.Option(help="Apply the fitted temperature.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Print the label and class probabilities of each text."""
    from llmneo.inference import Predictor

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    with user_errors():
        predictor = Predictor.load(model_dir, backend=backend)
        predictions = predictor.predict(texts, calibrate=calibrate)
    for text, prediction in zip(texts, predictions):
        if as_json:
            typer.echo(json.dumps({"text": text, **prediction.__dict__}))
        else:
            probs = "  ".join(f"{name}={p:.3f}" for name, p in zip(predictor.labels, prediction.probs))
            typer.echo(f"{prediction.label:<10} {probs}  {text}")


# --- tracking commands: promote, report, ui (tracking owner) ---

TrackingUriOption = Annotated[
    str | None,
    typer.Option("--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI, else ./mlflow.db)."),
]


@app.command()
def promote(
    run: Annotated[str, typer.Argument(help="Run id that logged the student (a pipeline parent works) or a version.")],
    alias: Annotated[str, typer.Option(help="Alias to set.")] = "champion",
    name: Annotated[str, typer.Option(help="Registered model name.")] = "llmneo-sst2-student",
    tracking_uri: TrackingUriOption = None,
) -> None:
    """Point the registry alias (champion by default) at the student version a run registered."""
    from mlflow.tracking import MlflowClient

    from llmneo.tracking.registry import promote as promote_version
    from llmneo.tracking.store import resolve_tracking_uri

    with user_errors():
        model_version = promote_version(MlflowClient(resolve_tracking_uri(tracking_uri)), name, run, alias)
    typer.echo(f"{name} version {model_version} is now @{alias}")


@app.command()
def report(
    source: Annotated[str, typer.Argument(help="A run folder (outputs/<name>) or an MLflow run id.")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="HTML file to write.")] = None,
    tracking_uri: TrackingUriOption = None,
) -> None:
    """Write one self-contained HTML report (plots embedded) for a run."""
    from llmneo.reporting.report import write_report
    from llmneo.tracking.store import resolve_tracking_uri

    with user_errors():
        path = write_report(source, output, resolve_tracking_uri(tracking_uri))
    typer.echo(f"report written to {path}")


@app.command()
def ui(
    port: Annotated[int, typer.Option(help="Port of the MLflow UI.")] = 5001,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    workers: Annotated[int, typer.Option(help="Server worker processes.")] = 1,
    tracking_uri: TrackingUriOption = None,
) -> None:
    """Start the MLflow UI (mlflow server) against the project's store; Ctrl-C stops it."""
    from llmneo.tracking.server import ui_command, ui_environment
    from llmneo.tracking.store import resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    command = ui_command(host, port, uri, workers)
    typer.echo(f"MLflow UI on http://{host}:{port} (store {uri})", err=True)
    # exec: the server takes this process's place, so Ctrl-C and SIGTERM reach it directly
    os.execve(command[0], command, ui_environment())


# --- serving commands: serve, bench-serve (serve owner) ---

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


# --- export and benchmark commands: export, bench (export owner) ---

DevDataOption = Annotated[Path | None, typer.Option("--data", help="Labelled dev file (default: SST-2 dev.tsv).")]
MaxExamplesOption = Annotated[int | None, typer.Option(min=1, help="Use only the first N dev texts.")]


@app.command()
def export(
    path: Annotated[Path | None, typer.Argument(
        help="A run folder (its student is exported) or a model folder (default with --config: its run folder).")] = None,
    config: OptionalConfigOption = None,
    set_: SetOption = None,
    format_: Annotated[str | None, typer.Option("--format", help="Export format (onnx; config export.format).")] = None,
    quantize: Annotated[str | None, typer.Option(
        help="none or int8, dynamic per channel (config export.quantize, default none).")] = None,
    min_agreement: Annotated[float | None, typer.Option(
        help="Least label agreement with PyTorch on dev to keep the export "
        "(config export.min_agreement_fp32 / _int8, default 1.0 / 0.99).")] = None,
    data: DevDataOption = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default PATH/export/onnx-fp32|onnx-int8).")] = None,
    max_examples: MaxExamplesOption = None,
    opset: Annotated[int | None, typer.Option(min=11, help="ONNX opset (config export.opset, default 17).")] = None,
) -> None:
    """Export the student to ONNX (LoRA merged), optionally int8, checked against PyTorch on dev.

    With --config, the config's `export` section gives the defaults and its run folder the PATH;
    options given on the command line win.
    """
    from llmneo.config import ExportConfig
    from llmneo.inference.export import ExportRefused, export_model

    cfg = load(config, set_) if config else None
    settings = cfg.export if cfg else ExportConfig()
    if format_ is not None and format_ != "onnx":
        fail(f"--format {format_}: only onnx is supported")
    if path is None:
        if cfg is None:
            fail("export needs PATH or --config")
        path = cfg.run_dir
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    with user_errors():
        try:
            report = export_model(path, quantize=quantize, out_dir=out, data_path=data, min_agreement=min_agreement,
                                  max_examples=max_examples, opset=opset, settings=settings)
        except ExportRefused as refused:
            fail(str(refused))
    typer.echo(f"exported to {report.folder}")


@app.command()
def bench(
    run_dir: Annotated[Path | None, typer.Argument(help="Run folder (outputs/<name>); or give --config.")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Experiment YAML naming the run.")] = None,
    set_: SetOption = None,
    data: DevDataOption = None,
    out: Annotated[Path | None, typer.Option(help="Folder for bench.md/png/json (default: the run folder).")] = None,
    max_examples: MaxExamplesOption = None,
    threads: Annotated[int | None, typer.Option(min=1, help="Threads at batch 32 (default: all cores).")] = None,
    latency_threads: Annotated[int, typer.Option(min=1, help="Threads at batch 1.")] = 1,
    tracking: Annotated[bool | None, typer.Option("--tracking/--no-tracking",
                                                  help="Log to MLflow (default: the config's setting).")] = None,
) -> None:
    """Teacher vs student (torch, ONNX fp32, ONNX int8): accuracy, size, memory, latency, throughput, FLOP/s."""
    from llmneo.bench.run import bench as run_bench
    from llmneo.bench.run import resolve_inputs
    from llmneo.config import TrackingConfig

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    cfg = load(config, set_) if config else None
    with user_errors():
        folder, dev, cfg = resolve_inputs(run_dir, cfg)
        track = cfg.tracking if cfg else TrackingConfig()
        if tracking is not None:
            track = track.model_copy(update={"enabled": tracking})
        run_bench(folder, data or dev, out_dir=out, max_examples=max_examples, num_threads=threads,
                  latency_threads=latency_threads, tracking=track, run_name=cfg.name if cfg else folder.name,
                  export_settings=cfg.export if cfg else None)
    typer.echo((Path(out or folder) / "bench.md").read_text())

# --- end of command blocks ---

if __name__ == "__main__":
    app()
