"""The ablation: one student architecture, several training recipes, the same wall-clock cap.

Each arm is the run's config with a few overrides (`loss.alpha=0`, `augment.enabled=false`, ...),
trained in `<run_dir>/ablation/<arm>/` from the run's own tuned teacher and cached logits (linked, not
recomputed), evaluated on dev every `eval_steps` and keeping its best checkpoint. Equal optimizer
steps would not be fair: CE on gold stops improving after a few epochs while KD on a transfer set
keeps learning, so every arm gets the same minutes and as many epochs as fit in them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmneo.config import Config, ConfigError, apply_overrides, validate_config

__all__ = ["ABLATION_ARMS", "ArmResult", "ablation_curves", "ablation_table", "arm_config", "parse_arm", "run_ablation"]

# The four arms: (a) CE on gold, (b) KD on gold, (c) CE on gold plus the teacher's hard labels
# on the transfer set, (d) the recipe as configured (KD on gold + transfer set).
ABLATION_ARMS: dict[str, list[str]] = {
    "ce-gold": ["loss.alpha=0", "augment.enabled=false"],
    "kd-gold": ["augment.enabled=false"],
    "ce-gold+teacher-hard": ["loss.alpha=0", "augment.enabled=true", "augment.teacher_labels=hard"],
    "kd-recipe": [],
}


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


def arm_config(config: Config, arm: str, overrides: list[str], minutes: float | None,
               folder: str = "ablation") -> Config:
    """The run's config for one arm: its own folder (`<run_dir>/<folder>/<arm>`), the shared cache, the
    wall-clock cap (None: none, or the one its overrides set)."""
    raw = config.model_dump(mode="json")
    raw["output_dir"] = str(config.run_dir / folder)
    raw["name"] = arm
    raw["tracking"]["log_model"] = False  # arms are compared, not registered
    train = raw["student"]["train"]
    train["time_limit_minutes"] = minutes
    train["keep_best"] = True
    if minutes is not None:
        train["epochs"] = max(train["epochs"], ARM_EPOCHS)  # the cap ends every arm, never its epoch count
    return validate_config(apply_overrides(raw, list(overrides)), source=f"{folder} arm {arm!r}")


def _link_shared_inputs(base: Config, arm: Config) -> None:
    """The arm reads the run's tuned teacher and transfer set through links: nothing is recomputed."""
    arm.run_dir.mkdir(parents=True, exist_ok=True)
    for name in ("teacher", "transfer.jsonl", "transfer.jsonl.meta.json"):
        source, link = (base.run_dir / name).resolve(), arm.run_dir / name
        if source.exists() and not link.exists():  # relative, so the run folder can be moved whole
            link.symlink_to(os.path.relpath(source, link.parent.resolve()))


def _result(arm: str, overrides: list[str], run_dir: Path) -> ArmResult:
    payload = json.loads((run_dir / "metrics.json").read_text())
    history = payload["history"]
    steps = max((int(entry.get("step", 0)) for entry in history), default=0)
    on_clock = payload["final"].get("train_minutes_on_clock", {}).get("minutes")  # the cap's own clock
    return ArmResult(arm, overrides, payload["final"], history, steps, on_clock or payload["train_seconds"] / 60,
                     str(run_dir))


def _same_student_recipe(base: Config, arm: Config) -> bool:
    """An arm that changes nothing the student's training reads is the run's own student."""
    sections = ("student", "loss", "augment", "data", "teacher")
    return all(getattr(base, s).model_dump() == getattr(arm, s).model_dump() for s in sections)


def run_ablation(config: Config, arms: dict[str, list[str]], minutes: float | None, resume: bool = False,
                 folder: str = "ablation") -> list[ArmResult]:
    """Train every arm (an arm whose metrics exist is kept unless it is re-run) and return the results."""
    from llmneo.training.pipeline import run_distill_stage

    results = []
    for number, (arm, overrides) in enumerate(arms.items(), start=1):
        arm_cfg = arm_config(config, arm, overrides, minutes, folder)
        if _same_student_recipe(config, arm_cfg) and (config.run_dir / "metrics.json").is_file():
            print(f"[ablation] {arm}: the run's own student (same recipe, same cap): not trained again")
            results.append(_result(arm, overrides, config.run_dir))
            continue
        if (arm_cfg.run_dir / "metrics.json").is_file() and resume:
            print(f"[ablation] {arm}: kept from an earlier run")
        else:
            cap = arm_cfg.student.train.time_limit_minutes
            print(f"[ablation] arm {number}/{len(arms)}: {arm} ({' '.join(overrides) or 'the configured recipe'}), "
                  f"{f'{cap:g} min' if cap else 'no time cap'}")
            _link_shared_inputs(config, arm_cfg)
            run_distill_stage(arm_cfg, resume=resume)
        results.append(_result(arm, overrides, arm_cfg.run_dir))
    return results


def ablation_table(results: list[ArmResult]) -> str:
    """Markdown: accuracy, F1, ROC-AUC, agreement with the teacher, ECE, steps and minutes per arm."""
    lines = ["| arm | overrides | accuracy | F1 | ROC-AUC | agreement | ECE | steps | minutes |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        m = r.metrics
        lines.append(f"| {r.arm} | `{' '.join(r.overrides) or '-'}` | {m['accuracy']:.4f} | {m['f1']:.4f} | "
                     f"{m['roc_auc']:.4f} | {m.get('agreement', float('nan')):.4f} | "
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


def parse_arm(spec: str) -> tuple[str, list[str]]:
    """`NAME: key=value key=value` -> (NAME, overrides); the overrides are checked like --set ones."""
    name, _, rest = spec.partition(":")
    name = name.strip()
    if not name or any(ch in name for ch in "/ \\"):
        raise ConfigError(f"--arm {spec!r}: expected 'NAME: key=value ...' with a plain NAME")
    overrides = rest.split()
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--arm {name}: override {item!r} is not key=value")
    return name, overrides
