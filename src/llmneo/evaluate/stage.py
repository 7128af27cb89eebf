"""The evaluate stage: teacher and student side by side on dev, measured in one process.

Quality, size and speed: each model's dev figures, parameter count and milliseconds per example,
timed a slice at a time in turns so that a shared machine's slowdowns charge both alike.
"""

from __future__ import annotations

import time

import numpy as np

from llmneo.config import Config
from llmneo.inference import Predictor
from llmneo.maths.metrics import classification_metrics, softmax
from llmneo.maths.params import total_parameters
from llmneo.modelfolder.card import write_model_card
from llmneo.progress import progress
from llmneo.teacher.live import load_live_teacher
from llmneo.teacher.tune import teacher_folder
from llmneo.tracking.runlog import log_stage_outputs
from llmneo.training.stage import run_splits, stage_run, write_json

__all__ = ["run_evaluate_stage"]


def _timed_side_by_side(models: dict[str, Predictor], texts: list[str], batch_size: int = 32,
                        slice_batches: int = 4) -> dict[str, tuple[np.ndarray, float]]:
    """Each model's dev logits and seconds, timed a slice of `slice_batches` batches at a time, the models
    in turn: a shared machine that slows down mid-way charges every model alike, so the speed-up holds
    (timed one whole pass after the other, the same student measured 1.89x to 2.09x on this machine)."""
    for predictor in models.values():
        predictor.predict_logits(texts[:batch_size], batch_size)  # warm-up
    size = batch_size * slice_batches
    logits: dict[str, list[np.ndarray]] = {role: [] for role in models}
    seconds = dict.fromkeys(models, 0.0)
    for start in progress(range(0, len(texts), size), f"timing {' and '.join(models)} on dev", unit="slice"):
        for role, predictor in models.items():
            started = time.perf_counter()
            logits[role].append(predictor.predict_logits(texts[start:start + size], batch_size))
            seconds[role] += time.perf_counter() - started
    return {role: (np.concatenate(logits[role]), seconds[role]) for role in models}


def _evaluation(predictor: Predictor, logits: np.ndarray, seconds: float, labels: list[int]) -> dict:
    """Dev metrics, size and milliseconds per example of one model."""
    metrics = classification_metrics(np.asarray(labels), softmax(logits))
    model = getattr(predictor.backend, "model", None)  # the deployed (merged) model, not the PEFT wrapper
    parameters = (total_parameters(model) if model is not None
                  else predictor.meta.get("parameters", {}).get("total"))
    return {**metrics, "parameters": parameters, "ms_per_example": 1000 * seconds / len(logits)}


def run_evaluate_stage(config: Config) -> dict[str, dict]:
    """Teacher and student side by side on dev: quality, size and speed, measured in one process."""
    splits = run_splits(config)
    with stage_run(config, "evaluate") as tracker:
        models = {"teacher": (Predictor.load(teacher_folder(config), device=config.teacher.device)
                              if config.teacher.finetune else load_live_teacher(config, labelled=splits.train)),
                  "student": Predictor.load(config.run_dir / "student", device=config.student.device)}
        timed = _timed_side_by_side(models, splits.dev.texts)
        summary = {role: _evaluation(models[role], *timed[role], splits.dev.labels) for role in models}
        summary["speedup"] = summary["teacher"]["ms_per_example"] / summary["student"]["ms_per_example"]
        write_json(config.run_dir / "summary.json", summary)
        write_model_card(config.run_dir / "student", config.run_dir)  # now with the speed against the teacher
        for role in ("teacher", "student"):
            tracker.log_metrics({f"{role}_{k}": v for k, v in summary[role].items() if v is not None})
        tracker.log_metrics({"speedup": summary["speedup"]})
        log_stage_outputs(tracker, config.run_dir)
    _print_summary(config, summary)
    return summary


def _print_summary(config: Config, summary: dict[str, dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{config.name}: teacher vs student on dev ({summary['student']['n']} examples)")
    for column in ("model", "accuracy", "F1 (macro)", "ROC-AUC", "parameters", "ms / example"):
        table.add_column(column, justify="right" if column != "model" else "left")
    for role, name in (("teacher", config.teacher.name_or_path), ("student", config.student.name_or_path)):
        row = summary[role]
        table.add_row(f"{role} ({name})", f"{row['accuracy']:.4f}", f"{row['f1_macro']:.4f}", f"{row['roc_auc']:.4f}",
                      f"{row['parameters'] / 1e6:.1f}M" if row["parameters"] else "?", f"{row['ms_per_example']:.2f}")
    Console().print(table)
    Console().print(f"student is {summary['speedup']:.1f}x faster per example; outputs in {config.run_dir}")

