"""Experiment tracking in MLflow behind one small interface (see docs/CONTRACTS.md, "Tracking").

``pipeline_run(config)`` opens the parent run of ``llmneo run``; ``stage_run(config, stage)`` opens a
child run when any run is active (ours or the caller's), else a top-level run. Both yield a tracker
with ``log_params``, ``log_metrics``, ``set_tags`` and ``trainer_callbacks``; when
``tracking.enabled`` is false they yield a tracker whose methods do nothing, so stage code never asks.
What a stage wrote to its run folder is logged by ``llmneo.tracking.runlog.log_stage_outputs``.

Where runs go is ``llmneo.tracking.store``'s to say. The tracking URI is MLflow's process-wide
setting, so it is set on entering the outermost run and restored on leaving it.

A run is never left RUNNING: an exception ends it FAILED, Ctrl-C or SIGTERM ends it KILLED. While a
run is open (main thread only) SIGTERM raises ``RunTerminated``, a ``SystemExit`` with code 143, so
the stack unwinds through every ``with`` and the process still exits as a terminated one would.
Why not the fluent API alone for logging: logging goes through an ``MlflowClient`` with an explicit
run id, so a run opened by someone else in between (a library's own MLflow callback) cannot capture
our metrics.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric, Param, RunStatus
from mlflow.tracking import MlflowClient

from llmneo.config import Config, flatten
from llmneo.tracking.store import experiment_id, resolve_tracking_uri

__all__ = [
    "STAGES",
    "MlflowTracker",
    "NullTracker",
    "RunTerminated",
    "Tracker",
    "pipeline_run",
    "run_tags",
    "stage_run",
]

_log = logging.getLogger(__name__)

STAGES = ("teacher", "augment", "cache", "student", "evaluate", "ablation", "sweep")
_MAX_PARAM_CHARS = 6000  # MLflow refuses longer param values


class RunTerminated(SystemExit):
    """Raised by our SIGTERM handler: unwinds like Ctrl-C, exits with the conventional 128 + 15."""

    def __init__(self) -> None:
        super().__init__(128 + signal.SIGTERM)


def _git_commit() -> str | None:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def _device(config: Config) -> str:
    """The student's device as the run will see it ("auto" resolved the way the trainer resolves it)."""
    wanted = config.student.device
    if wanted != "auto":
        return wanted
    import torch  # imported here: only needed to resolve "auto", and slow to import

    return "cuda" if torch.cuda.is_available() else "cpu"


def run_tags(config: Config, stage: str | None) -> dict[str, str]:
    """Tags every run carries: git commit, llmneo version, device, stage."""
    try:
        package_version = version("llmneo")
    except PackageNotFoundError:
        package_version = "unknown"
    tags = {"llmneo.version": package_version, "llmneo.device": _device(config), "llmneo.name": config.name}
    tags["llmneo.stage"] = stage or "pipeline"
    commit = _git_commit()
    if commit:
        tags["llmneo.git_commit"] = commit
        tags["mlflow.source.git.commit"] = commit
    return tags


def _param_value(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return text if len(text) <= _MAX_PARAM_CHARS else text[: _MAX_PARAM_CHARS - 3] + "..."


def _numeric(values: Mapping[str, Any]) -> dict[str, float]:
    """Keep the numbers of a metrics dict (Trainer logs also carry strings and None)."""
    return {
        key: float(value)
        for key, value in values.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    }


class NullTracker:
    """What a stage gets when tracking is off: every method is accepted and does nothing."""

    run_id: str | None = None

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Accept and drop: tracking is off."""

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Accept and drop: tracking is off."""

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Accept and drop: tracking is off."""

    def trainer_callbacks(self) -> list[Any]:
        return []


class MlflowTracker:
    """Logs to one MLflow run, always by explicit run id (see the module docstring for why)."""

    def __init__(self, client: MlflowClient, run_id: str, config: Config, stage: str | None) -> None:
        self.client = client
        self.run_id = run_id
        self.config = config
        self.stage = stage

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log params that are new to the run; MLflow refuses to change a logged param, so a key
        already logged with another value keeps its first value and a warning names it."""
        logged = self.client.get_run(self.run_id).data.params
        fresh = []
        for key, value in params.items():
            text = _param_value(value)
            if key not in logged:
                fresh.append(Param(key, text))
            elif logged[key] != text:
                _log.warning("param %s already logged as %r; %r not logged", key, logged[key], text)
        if fresh:
            self.client.log_batch(self.run_id, params=fresh)

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        numbers = _numeric(metrics)
        if numbers:
            now = int(time.time() * 1000)
            batch = [Metric(key, value, now, step or 0) for key, value in numbers.items()]
            self.client.log_batch(self.run_id, metrics=batch)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, value)

    def trainer_callbacks(self) -> list[Any]:
        from llmneo.tracking.callbacks import MetricsCallback  # imported here: it pulls transformers

        return [MetricsCallback(self)]


Tracker = NullTracker | MlflowTracker


def _status_for(error: BaseException | None) -> str:
    if error is None:
        return RunStatus.to_string(RunStatus.FINISHED)
    if isinstance(error, (KeyboardInterrupt, RunTerminated)):
        return RunStatus.to_string(RunStatus.KILLED)
    if isinstance(error, SystemExit) and error.code in (None, 0):
        return RunStatus.to_string(RunStatus.FINISHED)
    return RunStatus.to_string(RunStatus.FAILED)


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    """While a run is open, SIGTERM raises RunTerminated; the previous handler comes back after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum: int, frame: Any) -> None:
        raise RunTerminated()

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def _tracking_uri(uri: str) -> Iterator[None]:
    """Point MLflow's process-wide URI at ``uri``, then put back exactly what was there.

    ``mlflow.set_tracking_uri`` also writes ``$MLFLOW_TRACKING_URI``, and there is no public way to
    return to "not set", so MLflow's own ``_use_tracking_uri`` restores the setting and the
    environment variable is restored here.
    """
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    previous_env = os.environ.get("MLFLOW_TRACKING_URI")
    try:
        with _use_tracking_uri(uri):
            yield
    finally:
        if previous_env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous_env


def _start_system_metrics(config: Config, run_id: str, uri: str):
    if not config.tracking.log_system_metrics:
        return None
    # MLflow's own monitor class, not the public `start_run(log_system_metrics=True)`: the public route
    # takes its sampling interval from a process-wide setting, and ours is per config.
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    monitor = SystemMetricsMonitor(
        run_id, sampling_interval=config.tracking.system_metrics_interval_s, tracking_uri=uri
    )
    monitor.start()
    return monitor


def _end_runs_down_to(client: MlflowClient, run_id: str, parent_id: str | None, status: str) -> None:
    """End our run and any run code inside ours left open above it; the run below ours stays.

    Popping down to the run that was active before ours (rather than to ours) stays correct when
    code inside ended our run itself: the caller's run is never ended by mistake.
    """
    while (active := mlflow.active_run()) is not None and active.info.run_id != parent_id:
        mlflow.end_run(status=status)
    if client.get_run(run_id).info.status == RunStatus.to_string(RunStatus.RUNNING):
        client.set_terminated(run_id, status)


def _run_id_file(config: Config, stage: str | None) -> Path:
    return config.run_dir / ".mlflow" / f"{stage or 'pipeline'}.run_id"


def _resumable_run_id(client: MlflowClient, config: Config, stage: str | None) -> str | None:
    """The run a killed `--resume`d stage had open, when it is still in this store."""
    path = _run_id_file(config, stage)
    if not path.is_file():
        return None
    run_id = path.read_text().strip()
    try:
        client.get_run(run_id)
    except mlflow.exceptions.MlflowException:
        _log.warning("run %s recorded in %s is not in this store: starting a new run", run_id, path)
        return None
    return run_id


@contextmanager
def _open_run(config: Config, stage: str | None, run_name: str, resume: bool = False,
              parent_run_id: str | None = None) -> Iterator[MlflowTracker]:
    uri = resolve_tracking_uri(config.tracking.tracking_uri)
    with _tracking_uri(uri), _sigterm_raises():
        client = MlflowClient(uri)
        experiment = experiment_id(client, config.tracking.experiment, uri)
        parent = mlflow.active_run()
        resumed = _resumable_run_id(client, config, stage) if resume else None
        run = mlflow.start_run(
            run_id=resumed,
            experiment_id=None if resumed else experiment,
            run_name=None if resumed else run_name,
            nested=parent is not None,
            parent_run_id=None if parent is not None or resumed else parent_run_id,
            tags=run_tags(config, stage),
            log_system_metrics=False,  # our own monitor below, so its interval is per config
        )
        run_id = run.info.run_id
        _run_id_file(config, stage).parent.mkdir(parents=True, exist_ok=True)
        _run_id_file(config, stage).write_text(run_id)
        monitor = _start_system_metrics(config, run_id, uri)
        tracker = MlflowTracker(client, run_id, config, stage)
        error: BaseException | None = None
        try:
            tracker.log_params(flatten(config.model_dump(mode="json")))
            yield tracker
        except BaseException as raised:
            error = raised
            raise
        finally:
            if monitor is not None:
                monitor.finish()
            _end_runs_down_to(client, run_id, parent.info.run_id if parent else None, _status_for(error))


def _tracks(config: Config) -> bool:
    """Tracking on, and this is the main process: under torchrun only rank 0 opens runs."""
    return config.tracking.enabled and os.environ.get("RANK", "0") == "0"


@contextmanager
def pipeline_run(config: Config, resume: bool = False) -> Iterator[Tracker]:
    """The parent run of ``llmneo run`` (a no-op tracker when tracking is off).

    With ``resume`` the run this pipeline had open before it was killed is continued, not restarted.
    """
    if not _tracks(config):
        yield NullTracker()
        return
    with _open_run(config, None, config.name, resume) as tracker:
        yield tracker


@contextmanager
def stage_run(config: Config, stage: str, resume: bool = False, parent_run_id: str | None = None) -> Iterator[Tracker]:
    """One stage's run: a child of whatever run is active, else of `parent_run_id` (a run another process
    holds open, as `compare --jobs` arms do), else a top-level run (continued on resume)."""
    if stage not in STAGES:
        raise ValueError(f"stage_run: unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
    if not _tracks(config):
        yield NullTracker()
        return
    with _open_run(config, stage, f"{config.name}-{stage}", resume, parent_run_id) as tracker:
        yield tracker
