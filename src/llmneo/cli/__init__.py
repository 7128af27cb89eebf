"""The `llmneo` command line: one typer app, one thin command per pipeline stage.

Commands parse arguments, check the whole run before any work starts (`preflight`), turn known errors
into one line, and call the stage's function; the work lives in the stage modules. This module holds
the app, the shared options, quiet-by-default output and error handling; the commands live in
`pipeline` (teacher, augment, cache, distill, run, compare, init, config-reference), `models` (predict,
evaluate), `experiments` (promote, report, ui), `serving` (serve, bench-serve), `exporting` (export,
bench) and `sweeping` (sweep). Nothing in llmneo imports the CLI.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, NoReturn

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Distil an LLM into a small, fast classifier.",
                  pretty_exceptions_enable=False)

ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="Experiment YAML (see configs/).")]
OptionalConfigOption = Annotated[Path | None, typer.Option("--config", "-c", help="Experiment YAML (see configs/).")]
SetOption = Annotated[list[str] | None, typer.Option("--set", help="Override: key.sub=value (repeatable).")]
ResumeOption = Annotated[bool, typer.Option("--resume", help="Continue from the last complete checkpoint.")]
ForceOption = Annotated[bool, typer.Option("--force", help="Redo a stage that already finished with this recipe.")]
SkipBadRows = Annotated[bool, typer.Option("--skip-bad-rows", help="Drop bad data rows (reported by line).")]
MODEL_HELP = ("A run folder (outputs/<name>), a model folder, or an MLflow model URI "
              "(models:/name@alias, models:/name/3, runs:/<id>/path).")
ModelArgument = Annotated[str, typer.Argument(metavar="MODEL", help=MODEL_HELP, show_default=False)]

DEBUG_ENV = "LLMNEO_DEBUG"


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"llmneo {version('llmneo')}")
        raise typer.Exit()


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show library logs and warnings (MLflow, "
                                          "transformers), quiet by default.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help=f"Show the traceback of an error (or {DEBUG_ENV}=1).")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Distil an LLM or encoder (the teacher) into a small, fast classifier (the student)."""
    if debug:
        os.environ[DEBUG_ENV] = "1"
    from llmneo.cli.output import configure_output

    configure_output(verbose)


def debugging() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes")


def fail(message: str) -> NoReturn:
    """One line on stderr and exit code 2: what the user must fix, not a traceback."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _resume_hint() -> str:
    """The command as typed, with --resume: what continues an interrupted run."""
    argv = ["llmneo", *sys.argv[1:]]
    if "--resume" not in argv:
        argv.append("--resume")
    return shlex.join(argv)


@contextmanager
def user_errors(resumable: bool = False) -> Iterator[None]:
    """Every error becomes one line (with --debug or LLMNEO_DEBUG=1: the traceback). Ctrl-C says how to resume."""
    from llmneo.cache.store import CacheCorrupt
    from llmneo.config import ConfigError
    from llmneo.data import DataError

    try:
        yield
    except typer.Exit:
        raise
    except KeyboardInterrupt:
        if debugging():
            raise
        hint = f"; finished stages and checkpoints are kept: {_resume_hint()}" if resumable else ""
        typer.echo(f"\ninterrupted{hint}", err=True)
        raise typer.Exit(130) from None
    except (ConfigError, DataError, CacheCorrupt, FileNotFoundError, ValueError) as error:
        if debugging():
            raise
        fail(str(error))
    except Exception as error:  # a bug or an environment problem: still one line, the traceback on request
        if debugging():
            raise
        fail(f"{type(error).__name__}: {error} (run again with --debug for the traceback)")


def load(config: Path, overrides: list[str] | None, skip_bad_rows: bool = False, checks: str = "run"):
    """The config, checked up front (`checks`: "run" for a pipeline stage, "sections" for a command that
    reads only its serve/export sections): nothing is created when this fails."""
    from llmneo.cli.preflight import preflight
    from llmneo.config import load_config

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    with user_errors():
        extra = ["data.skip_bad_rows=true"] if skip_bad_rows else []
        loaded = load_config(config, (overrides or []) + extra)
        return preflight(loaded, config) if checks == "run" else loaded


# Importing the command modules registers their commands, in the order `llmneo --help` lists them.
# isort: off
from llmneo.cli import pipeline
from llmneo.cli import init
from llmneo.cli import models
from llmneo.cli import experiments
from llmneo.cli import serving
from llmneo.cli import exporting
from llmneo.cli import sweeping
# isort: on

__all__ = ["app", "experiments", "exporting", "init", "models", "pipeline", "serving", "sweeping"]
