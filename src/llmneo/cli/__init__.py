"""The `llmneo` command line: one typer app, one thin command per pipeline stage.

Commands only parse arguments, turn known errors into one-line messages, and call the stage's
function; the work lives in the stage modules. This module holds the app, the shared options and
error handling; the commands live in `pipeline` (teacher, cache, distill, run, evaluate, predict,
config-reference), `experiments` (promote, report, ui), `serving` (serve, bench-serve) and
`exporting` (export, bench) and `sweeping` (sweep). Nothing in llmneo imports the CLI.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, NoReturn

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Distil an LLM into a small, fast classifier.")

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


# Importing the command modules registers their commands, in the order `llmneo --help` lists them.
# isort: off
from llmneo.cli import pipeline
from llmneo.cli import experiments
from llmneo.cli import serving
from llmneo.cli import exporting
from llmneo.cli import sweeping
# isort: on

__all__ = ["app", "experiments", "exporting", "pipeline", "serving", "sweeping"]
