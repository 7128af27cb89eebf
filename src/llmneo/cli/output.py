"""Quiet by default, loud on request: what the libraries may print during a command.

MLflow's INFO lines, transformers' load reports and progress bars for reading weights, datasets' map
bars and the warnings of pickle-based libraries say nothing a user acts on; with `--verbose` they come
back. Progress bars for the work itself stay (`llmneo.progress`). Set once, at the command line's edge.
"""

from __future__ import annotations

import logging
import os
import warnings

__all__ = ["VERBOSE_ENV", "configure_output"]

VERBOSE_ENV = "LLMNEO_VERBOSE"
_QUIET_LOGGERS = ("mlflow", "alembic", "urllib3", "httpx", "filelock", "torch.distributed", "accelerate")


def configure_output(verbose: bool) -> None:
    """Library logs at WARNING (ERROR for transformers' chatty loader), their warnings off, unless `verbose`.
    Set through the variables the libraries read when imported (no import here: `llmneo predict` on an
    ONNX folder never loads transformers), and exported so child processes (ablation arms) follow suit."""
    verbose = verbose or os.environ.get(VERBOSE_ENV) == "1"
    os.environ[VERBOSE_ENV] = "1" if verbose else "0"
    if verbose:
        logging.basicConfig(level=logging.INFO)
        return
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
