"""`llmneo sweep`: several students from one teacher, one transfer set and one logit cache, each trained
as a child MLflow run and benchmarked as `llmneo bench` does, drawn as an accuracy/speed frontier.

A user choosing a student wants one picture: how accurate and how fast each candidate is, next to
the teacher. The students are arms of the ablation machinery (`llmneo.experiments.ablation`) kept in
`<run_dir>/sweep/<name>/`: each links the run's tuned teacher and transfer set and reads the run's
cached teacher logits, so no student recomputes them. A finished student is kept on a rerun (unless
its recipe changed, which is refused, or `--fresh`); an interrupted one resumes from its checkpoint;
each has a wall-clock cap (`--minutes`, or `--cap NAME=MINUTES`). The outputs are `frontier.json`,
`frontier.md` and `frontier.png` in the run folder, and the same in the sweep's MLflow run.
"""

from __future__ import annotations

import json
import multiprocessing
import re
import shutil
import time
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

from llmneo.atomic import write_text_atomic
from llmneo.bench.run import resolve_inputs
from llmneo.cache.stage import run_cache_stage
from llmneo.config import Config, ConfigError, flatten, load_config
from llmneo.data import read_labeled_head
from llmneo.experiments.ablation import ArmResult, arm_config, run_ablation
from llmneo.experiments.arms import describe_overrides, parse_arm
from llmneo.experiments.sweep_rows import BenchSettings, Measured, frontier_rows, measure_folder
from llmneo.maths.frontier import SPEEDS, PickRule, pick, speedup_check
from llmneo.modelfolder import has_model_folder
from llmneo.reporting.frontier import frontier_figure, frontier_markdown, frontier_points
from llmneo.reporting.plots import png_bytes
from llmneo.teacher.tune import run_teacher_stage
from llmneo.tracking import tracker as tracking
from llmneo.tracking.runlog import log_stage_outputs
from llmneo.tracking.tracker import MlflowTracker
from llmneo.transfer.stage import run_augment_stage

__all__ = ["SWEEP_FOLDER", "SweepOutcome", "parse_cap", "parse_student", "run_sweep", "student_configs"]

SWEEP_FOLDER = "sweep"
_RECIPE = ("data", "teacher", "student", "loss", "augment")  # what a kept student must have been trained with


@dataclass
class SweepOutcome:
    run_dir: Path
    rows: list[dict[str, Any]]
    notes: list[str]
    wall_seconds: float
    picked: dict[str, Any] | None = None
    promoted_version: str | None = None


def parse_student(spec: str, defaults: dict[str, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """`NAME=key=value ...` or `NAME: key=value ...` -> (NAME, overrides); a bare NAME of a student in `defaults`
    is that student (`NAME=` with nothing after it is the run's own recipe)."""
    if spec.strip() in defaults:
        return spec.strip(), dict(defaults[spec.strip()])
    head, sep, rest = spec.partition("=")
    if ":" in head or not sep:
        return parse_arm(spec, flag="--student")
    return parse_arm(f"{head}: {rest}", flag="--student")


def parse_cap(spec: str, students: dict[str, dict[str, Any]]) -> tuple[str, float]:
    """`NAME=MINUTES` for a student of this sweep."""
    name, _, minutes = spec.partition("=")
    if name not in students:
        raise ConfigError(f"--cap {spec!r}: no student {name!r} in this sweep ({', '.join(students)})")
    try:
        value = float(minutes)
    except ValueError:
        raise ConfigError(f"--cap {spec!r}: expected NAME=MINUTES") from None
    if value <= 0:
        raise ConfigError(f"--cap {spec!r}: minutes must be > 0")
    return name, value


def student_configs(config: Config, students: dict[str, dict[str, Any]], minutes: float | None) -> dict[str, Config]:
    """Every student's config, validated before anything trains: a bad override stops the sweep at once."""
    if "teacher" in students:
        raise ConfigError("sweep student name 'teacher' is reserved for the teacher's points")
    return {name: arm_config(config, name, overrides, minutes, SWEEP_FOLDER) for name, overrides in students.items()}


def _changed_keys(saved: Config, wanted: Config) -> list[str]:
    old = flatten({s: getattr(saved, s).model_dump(mode="json") for s in _RECIPE})
    new = flatten({s: getattr(wanted, s).model_dump(mode="json") for s in _RECIPE})
    return sorted(key for key in old.keys() | new.keys() if old.get(key) != new.get(key))


def prepare_folders(configs: dict[str, Config], fresh: bool) -> None:
    """`fresh`: start every student over. Otherwise a student folder made with another recipe is refused,
    so a kept student (or a checkpoint resumed) always is what its overrides say."""
    for name, cfg in configs.items():
        if fresh and cfg.run_dir.exists():
            shutil.rmtree(cfg.run_dir)
        saved = cfg.run_dir / "config.yaml"
        if saved.is_file() and (changed := _changed_keys(load_config(saved), cfg)):
            raise ConfigError(f"sweep student {name!r}: {cfg.run_dir} was trained with other settings "
                              f"({', '.join(changed[:4])}{', ...' if len(changed) > 4 else ''}); rerun with --fresh "
                              f"or delete that folder")


def _notes(rows: list[dict[str, Any]]) -> list[str]:
    """The issue's bar, stated whichever way it falls: >= 3x faster per sentence, < 1.5 points below."""
    notes = []
    for speed, where in zip(SPEEDS, ("p50 latency at batch 1", "sentences/s at batch 32")):
        check = speedup_check(frontier_points(rows), speed)
        if check is None:
            continue
        if check.student is None:
            notes.append(f"{where}: no student is 3x faster than the teacher ({check.teacher.label}); "
                         f"the fastest is {check.speedup:.2f}x")
        else:
            verdict = "meets" if check.met else f"misses by {check.drop_points - check.max_drop_points:.2f} points"
            notes.append(f"{where}: {check.student.label} is {check.speedup:.1f}x faster than {check.teacher.label}, "
                         f"{check.drop_points:+.2f} points below it: {verdict} the bar (>= 3x, < 1.5 points below)")
    return notes


def _measure_all(config: Config, arms: list[ArmResult], settings: BenchSettings) -> tuple[Measured | None,
                                                                                          list[Measured], Path, int]:
    _, data_path, _ = resolve_inputs(None, config)
    dev = read_labeled_head(data_path, config.data.labels, settings.max_examples)
    measure = {"texts": dev.texts, "labels": dev.labels, "data_path": data_path, "settings": settings,
               "export_settings": config.export}
    teacher = (measure_folder("teacher", config.run_dir, ("teacher",), **measure)
               if has_model_folder(config.run_dir / "teacher") else None)
    students = []
    for arm in arms:
        measured = measure_folder(arm.arm, Path(arm.run_dir), ("student",), **measure)
        measured.train_minutes, measured.steps = arm.minutes, arm.steps
        measured.validation_accuracy = arm.metrics.get("validation", {}).get("accuracy")
        students.append(measured)
    return teacher, students, data_path, len(dev)


def _metric_key(row: dict[str, Any]) -> str:
    return re.sub(r"[^\w\-.:/]", "_", f"{row['name']}.{row['backend']}")  # MLflow's metric-name alphabet


def _log(tracker: Any, rows: list[dict[str, Any]], arms: list[ArmResult], wall_seconds: float) -> None:
    """Every row's figures on the sweep's run, and each student's on its own child run."""
    figures = ("accuracy", "f1_macro", "roc_auc", "agreement", "latency_p50_ms", "throughput", "gflop_per_sentence",
               "weights_mb")
    tracker.log_metrics({f"{_metric_key(r)}.{k}": r[k] for r in rows for k in figures} |
                        {"sweep_wall_seconds": wall_seconds})
    if not isinstance(tracker, MlflowTracker):
        return
    for arm in arms:
        run_id_file = Path(arm.run_dir) / ".mlflow" / "student.run_id"
        if run_id_file.is_file():
            child = MlflowTracker(tracker.client, run_id_file.read_text().strip(), tracker.config, "student")
            child.log_metrics({f"bench.{_metric_key(r).split('.', 1)[1]}.{k}": r[k] for r in rows
                               if r["name"] == arm.arm for k in figures})


def _promote(tracker: Any, config: Config, folder: Path) -> str:
    """Register the chosen student (in the sweep's run) and give it the champion alias."""
    from llmneo.tracking.registry import (  # imported here: pyfunc is slow to import
        CHAMPION,
        log_student_model,
    )
    from llmneo.tracking.registry import promote as set_alias

    if not isinstance(tracker, MlflowTracker):
        raise ConfigError("--promote: tracking.enabled is false, and the registry lives in MLflow")
    version = log_student_model(tracker, folder)
    return set_alias(tracker.client, config.tracking.registered_model_name, version, CHAMPION)


def _write(config: Config, outcome: SweepOutcome, setup: dict[str, Any], students: dict[str, dict[str, Any]]) -> None:
    run_dir = config.run_dir
    payload = {"setup": setup, "rows": outcome.rows, "notes": outcome.notes,
               "students": {name: describe_overrides(overrides) for name, overrides in students.items()},
               "pick": outcome.picked, "promoted_version": outcome.promoted_version}
    write_text_atomic(run_dir / "frontier.json", json.dumps(payload, indent=2))
    write_text_atomic(run_dir / "frontier.md", frontier_markdown(outcome.rows, outcome.notes))
    figure = frontier_figure(outcome.rows, f"{config.name}: dev accuracy against speed ({setup['dev texts']} texts)")
    (run_dir / "frontier.png").write_bytes(png_bytes(figure))


def _choose(rule: PickRule, rows: list[dict[str, Any]], arms: list[ArmResult], promoting: bool, tracker: Any,
            config: Config) -> tuple[dict[str, Any], str | None]:
    """The pick (`rule` and the chosen row, or None) and, with `promote`, the registry version it became.

    Chosen as the ablation chooses: on validation accuracy when every student has it (dev is then touched
    once, by the report), else on dev accuracy, and the pick says which."""
    on_validation = all(r.get("validation_accuracy") is not None for r in rows if r["role"] == "student")
    chosen = pick(frontier_points(rows, "validation_accuracy" if on_validation else "accuracy"), rule)
    row = next((r for r in rows if chosen and (r["name"], r["backend"]) == (chosen.name, chosen.backend)), None)
    version = None
    if chosen and promoting:
        version = _promote(tracker, config, Path(next(arm.run_dir for arm in arms if arm.arm == chosen.name)))
    return {"rule": rule.describe(), "accuracy": "validation" if on_validation else "dev", "choice": row}, version


def run_sweep(config: Config, students: dict[str, dict[str, Any]], minutes: float | None, fresh: bool = False,
              settings: BenchSettings | None = None, rule: PickRule | None = None,
              promote: bool = False) -> SweepOutcome:
    """Teacher, transfer set and cache (reused when present), then every student trained and measured."""
    clock = [time.perf_counter()]
    settings = settings or BenchSettings()
    configs = student_configs(config, students, minutes)
    if promote and (rule is None or not config.tracking.enabled):
        raise ConfigError("--promote needs --pick (or --max-latency-ms) and tracking.enabled: true")
    prepare_folders(configs, fresh)
    run_teacher_stage(config, resume=True)
    run_augment_stage(config)
    run_cache_stage(config)
    clock.append(time.perf_counter())
    with tracking.stage_run(config, "sweep") as tracker:
        arms = run_ablation(config, students, minutes, resume=True, folder=SWEEP_FOLDER)
        clock.append(time.perf_counter())
        teacher, measured, data_path, count = _measure_all(config, arms, settings)
        clock.append(time.perf_counter())
        rows = frontier_rows(teacher, measured)
        notes = [note for m in ([teacher] if teacher else []) + measured for note in m.notes] + _notes(rows)
        outcome = SweepOutcome(config.run_dir, rows, notes, 0.0)
        if rule is not None:
            outcome.picked, outcome.promoted_version = _choose(rule, rows, arms, promote, tracker, config)
        outcome.wall_seconds = time.perf_counter() - clock[0]
        setup = {"wall_seconds": round(outcome.wall_seconds, 1),
                 "seconds": dict(zip(("teacher, transfer set, cache", "students", "benchmarks"),
                                     (round(b - a, 1) for a, b in pairwise(clock)))),
                 "dev texts": count, "data": str(data_path), "threads (batch 32)": settings.threads or "all cores",
                 "threads (batch 1)": settings.latency_threads or "all cores",
                 "cpu cores": multiprocessing.cpu_count(), "minutes per student": minutes,
                 "caps": {n: c.student.train.time_limit_minutes for n, c in configs.items()}}
        _write(config, outcome, setup, students)
        _log(tracker, rows, arms, outcome.wall_seconds)
        log_stage_outputs(tracker, config.run_dir)
    return outcome
