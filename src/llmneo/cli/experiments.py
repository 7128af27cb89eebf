"""The experiment-store commands: promote, report, ui."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from llmneo.cli import (
    app,
    user_errors,
)

TrackingUriOption = Annotated[
    str | None,
    typer.Option("--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI, else ./mlflow.db)."),
]


@app.command()
def promote(
    run: Annotated[str, typer.Argument(metavar="RUN", help="Run id that logged the student (a pipeline parent "
                                       "works) or a version number.", show_default=False)],
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
    source: Annotated[str, typer.Argument(metavar="RUN", help="A run folder (outputs/<name>) or an MLflow run id.",
                                          show_default=False)],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="HTML file to write.")] = None,
    tracking_uri: TrackingUriOption = None,
) -> None:
    """Write one self-contained HTML report (plots embedded) for a run."""
    from llmneo.reporting.html import write_report
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
