"""The ablation: one student architecture, several training recipes, the same training cap.

Each arm is the run's config with a few keys set (`loss.alpha: 0`, `augment.enabled: false`, ...: an arms
YAML file, `llmneo.experiments.arms`),
trained in `<run_dir>/ablation/<arm>/` from the run's own tuned teacher and cached logits (linked, not
recomputed), evaluated on dev every `eval_steps` and keeping its best checkpoint. Equal optimizer
steps would not be fair: CE on gold stops improving after a few epochs while KD on a transfer set
keeps learning, so every arm gets the same minutes and as many epochs as fit in them.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import traceback
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmneo.config import Config, apply_settings, validate_config
from llmneo.distill.stage import finished_student, run_distill_stage
from llmneo.experiments.arms import describe_overrides
from llmneo.inference.cores import available_cores
from llmneo.progress import progress

__all__ = ["ArmResult", "ablation_curves", "ablation_table", "arm_config", "read_ablation", "run_ablation"]

Arms = dict[str, dict[str, Any]]  # arm name -> {dotted config key: value}


# Enough epochs that no arm runs out of data before the cap: CE on a small gold set takes many passes.
ARM_EPOCHS = 100


@dataclass
class ArmResult:
    arm: str
    overrides: list[str]
    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    steps: int
    minutes: float
    run_dir: str = ""  # the folder holding the arm's student/ (the run's own, for an arm that changes nothing)

    @property
    def accuracy_at_cap(self) -> float:
        """Dev accuracy of the weights the cap ended on: a figure no dev score chose, unlike the best checkpoint."""
        evaluations = [e for e in self.history if "eval_accuracy" in e]
        return float(max(evaluations, key=lambda e: int(e["step"]))["eval_accuracy"]) if evaluations else float("nan")


def arm_config(config: Config, arm: str, overrides: dict[str, Any], minutes: float | None,
               folder: str = "ablation") -> Config:
    """The run's config for one arm: its own folder (`<run_dir>/<folder>/<arm>`), the shared cache, the
    training cap in minutes (None: none, or the one its overrides set). Checkpoints are chosen as the config
    chooses them (`keep_best`): on its validation split when it carves one; a config that keeps the last
    weights reads dev once per arm."""
    raw = config.model_dump(mode="json")
    raw["output_dir"] = str(config.run_dir / folder)
    raw["name"] = arm
    raw["tracking"]["log_model"] = False  # arms are compared, not registered
    train = raw["student"]["train"]
    train["time_limit_minutes"] = minutes  # keep_best as the config says: on its validation split, or not at all
    if minutes is not None:
        train["epochs"] = max(train["epochs"], ARM_EPOCHS)  # the cap ends every arm, never its epoch count
    where = f"{folder} {'student' if folder == 'sweep' else 'arm'} {arm!r}"
    return validate_config(apply_settings(raw, overrides, flag=where), source=where)


def _link_shared_inputs(base: Config, arm: Config) -> None:
    """The arm reads the run's tuned teacher and transfer set through links: nothing is recomputed."""
    arm.run_dir.mkdir(parents=True, exist_ok=True)
    for name in ("teacher", "transfer.jsonl", "transfer.jsonl.meta.json"):
        source, link = (base.run_dir / name).resolve(), arm.run_dir / name
        if source.exists() and not link.exists():  # relative, so the run folder can be moved whole
            link.symlink_to(os.path.relpath(source, link.parent.resolve()))


def _result(arm: str, overrides: dict[str, Any], run_dir: Path) -> ArmResult:
    payload = json.loads((run_dir / "metrics.json").read_text())
    history = payload["history"]
    steps = max((int(entry.get("step", 0)) for entry in history), default=0)
    on_clock = payload["final"].get("train_minutes_on_clock", {}).get("minutes")  # the cap's own clock
    return ArmResult(arm, describe_overrides(overrides), payload["final"], history, steps,
                     on_clock or payload["train_seconds"] / 60, str(run_dir))


def _same_student_recipe(base: Config, arm: Config) -> bool:
    """An arm that changes nothing the student's training reads is the run's own student."""
    sections = ("student", "loss", "augment", "data", "teacher")
    return all(getattr(base, s).model_dump() == getattr(arm, s).model_dump() for s in sections)


def run_ablation(config: Config, arms: Arms, minutes: float | None, resume: bool = False,
                 folder: str = "ablation", jobs: int = 1, parent_run_id: str | None = None,
                 force: bool = False) -> list[ArmResult]:
    """Train every arm and return the results. An arm already trained with its recipe is kept (`force`: trained
    again); `resume` continues an interrupted arm from its last complete checkpoint.

    `jobs > 1` trains that many arms at once, each in its own process on `cores // jobs` threads (unless
    the config pins `student.train.num_threads`): on a small CPU machine, one-thread arms side by side
    finish the set in a fraction of the wall time, and arms that run side by side share the machine
    alike. Each arm's output goes to `<arm>/train.log`; its MLflow run nests under `parent_run_id`.
    """
    results: dict[str, ArmResult] = {}
    pending: list[tuple[str, dict[str, Any], Config]] = []
    for arm, overrides in arms.items():
        arm_cfg = arm_config(config, arm, overrides, minutes, folder)
        if _same_student_recipe(config, arm_cfg) and (config.run_dir / "metrics.json").is_file():
            print(f"[ablation] {arm}: the run's own student (same recipe, same cap): not trained again")
            results[arm] = _result(arm, overrides, config.run_dir)
        elif not force and finished_student(arm_cfg) is not None:
            print(f"[{folder}] {arm}: already trained with this recipe, kept (--force trains it again)")
            results[arm] = _result(arm, overrides, arm_cfg.run_dir)
        else:
            pending.append((arm, overrides, arm_cfg))
    if jobs > 1 and len(pending) > 1:
        _train_side_by_side(config, pending, jobs, resume, parent_run_id)
    else:
        _train_one_by_one(config, pending, resume, parent_run_id)
    for arm, overrides, arm_cfg in pending:
        results[arm] = _result(arm, overrides, arm_cfg.run_dir)
    return [results[arm] for arm in arms]


def _describe(arm: str, overrides: dict[str, Any], arm_cfg: Config) -> str:
    cap = arm_cfg.student.train.time_limit_minutes
    said = " ".join(describe_overrides(overrides)) or "the configured recipe"
    return f"{arm} ({said}), {f'{cap:g} min' if cap else 'no time cap'}"


def _train_one_by_one(config: Config, pending: list[tuple[str, dict[str, Any], Config]], resume: bool,
                      parent_run_id: str | None) -> None:
    for number, (arm, overrides, arm_cfg) in enumerate(pending, start=1):
        print(f"[ablation] arm {number}/{len(pending)}: {_describe(arm, overrides, arm_cfg)}")
        _link_shared_inputs(config, arm_cfg)
        run_distill_stage(arm_cfg, resume=resume, parent_run_id=parent_run_id, force=True)


def _train_side_by_side(config: Config, pending: list[tuple[str, dict[str, Any], Config]], jobs: int, resume: bool,
                        parent_run_id: str | None) -> None:
    threads = max(1, available_cores() // jobs)
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no torch thread pool inherited
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        futures: dict[Future, tuple[str, Path]] = {}
        for arm, overrides, arm_cfg in pending:
            if arm_cfg.student.train.num_threads is None:
                arm_cfg = arm_cfg.model_copy(update={"student": arm_cfg.student.model_copy(update={
                    "train": arm_cfg.student.train.model_copy(update={"num_threads": threads})})})
            _link_shared_inputs(config, arm_cfg)
            log = arm_cfg.run_dir / "train.log"
            print(f"[ablation] {_describe(arm, overrides, arm_cfg)}: {arm_cfg.student.train.num_threads} "
                  f"thread(s), log {log}")
            futures[pool.submit(_train_arm_in_child, arm_cfg.model_dump(mode="json"), str(log), resume,
                                parent_run_id)] = (arm, log)
        for future in progress(as_completed(futures), f"ablation arms ({jobs} at a time)", total=len(futures),
                               unit="arm"):
            arm, log = futures[future]
            if future.exception() is not None:
                print(f"[ablation] {arm} failed; its output is in {log}")
            future.result()
            print(f"[ablation] {arm} done")


def _train_arm_in_child(raw_config: dict[str, Any], log: str, resume: bool, parent_run_id: str | None) -> None:
    """One arm in a worker process, its output in its own log so that parallel arms do not interleave."""
    config = validate_config(raw_config, source=f"ablation arm {raw_config.get('name')!r}")
    os.environ["OMP_NUM_THREADS"] = str(config.student.train.num_threads)  # before torch starts its pool
    with open(log, "a", encoding="utf-8") as stream, redirect_stdout(stream), redirect_stderr(stream):
        try:
            run_distill_stage(config, resume=resume, parent_run_id=parent_run_id, force=True)
        except BaseException:
            traceback.print_exc()  # into the arm's log; the parent re-raises the error itself
            raise


def ablation_table(results: list[ArmResult]) -> str:
    """Markdown per arm: the kept checkpoint's accuracy, F1, ROC-AUC, agreement with the teacher and ECE on dev;
    the accuracy of the last weights, at the cap; steps and minutes. With a validation split (which chose the
    checkpoints), its accuracy at the kept checkpoint and at the cap too; dev is then read once per arm."""
    validated = any("validation" in r.metrics for r in results)
    chosen = "| validation | validation at the cap " if validated else "| at the cap "
    lines = [(f"| arm | overrides | {'dev accuracy' if validated else 'accuracy'} {chosen}| F1 (macro) | ROC-AUC | agreement "
             "| ECE | steps | minutes |"),
             "| --- " * (11 if validated else 10) + "|"]
    for r in results:
        m = r.metrics
        selection = (f"{m['validation']['accuracy']:.4f} | {r.accuracy_at_cap:.4f}" if "validation" in m
                     else ("- | -" if validated else f"{r.accuracy_at_cap:.4f}"))
        lines.append(f"| {r.arm} | `{' '.join(r.overrides) or '-'}` | {m['accuracy']:.4f} | {selection} | "
                     f"{m['f1_macro']:.4f} | {m['roc_auc']:.4f} | {m.get('agreement', float('nan')):.4f} | "
                     f"{m['calibration']['ece_before']:.4f} | {r.steps} | {r.minutes:.1f} |")
    return "\n".join(lines) + "\n"


def ablation_curves(results: list[ArmResult]) -> dict[str, tuple[list[float], list[float]]]:
    """Per arm: (training minutes, dev accuracy) at each evaluation; minutes from the arm's step rate."""
    curves = {}
    for r in results:
        evaluations = [e for e in r.history if "eval_accuracy" in e]
        minutes_per_step = r.minutes / max(r.steps, 1)
        curves[r.arm] = ([int(e["step"]) * minutes_per_step for e in evaluations],
                         [float(e["eval_accuracy"]) for e in evaluations])
    return curves


def read_ablation(run_dir: Path) -> list[ArmResult]:
    """The arms an `llmneo compare` run wrote to `<run_dir>/ablation.json`."""
    path = Path(run_dir) / "ablation.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no ablation here (run `llmneo compare` for this run folder first)")
    return [ArmResult(**row) for row in json.loads(path.read_text())]
