"""The distill stage: the student learns from the teacher's cached signals and the gold labels.

The rows are the gold training rows, then the transfer set's (unlabelled: the loss terms weigh them by
their `unlabelled` weights; or, with `augment.teacher_labels: hard`, labelled by the teacher's argmax).
The loss is the composition `loss` describes; every teacher signal its terms declare comes from the
cache, so a second `distill` with the same teacher and data never loads the teacher.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
from transformers import AutoConfig, set_seed

from llmneo.atomic import atomic_path
from llmneo.cache.stage import teacher_logits, teacher_pooled_signal
from llmneo.cache.store import CachedLogits
from llmneo.config import Config, StudentConfig
from llmneo.data import DataSplits, LabeledTexts
from llmneo.losses import IGNORE_LABEL, LOGITS, LossComposition, SignalContext, build_loss
from llmneo.maths.metrics import softmax
from llmneo.modelfolder import has_model_folder, read_model_meta
from llmneo.modelfolder.card import write_model_card
from llmneo.modelfolder.sources import model_identity
from llmneo.teacher.live import teacher_source
from llmneo.teacher.tune import teacher_folder
from llmneo.tracking.runlog import log_stage_outputs
from llmneo.training.distributed import is_main_process
from llmneo.training.models import build_model
from llmneo.training.stage import run_splits, stage_run, start_run_folder, write_json
from llmneo.training.trainer import TrainOutcome, fine_tune
from llmneo.transfer.sets import TransferSet
from llmneo.transfer.stage import load_transfer_set

__all__ = ["RUN_TEACHER", "data_summary", "finished_student", "run_distill_stage", "student_model_config",
           "student_recipe", "training_rows"]

RUN_TEACHER = "run:teacher"


def student_model_config(config: Config) -> StudentConfig:
    """`name_or_path: run:teacher` starts the student from this run's tuned teacher (DistilBERT-style:
    a subset of the teacher's own layers, already adapted to the task, with its classification head)."""
    if config.student.name_or_path != RUN_TEACHER:
        return config.student
    return config.student.model_copy(update={"name_or_path": str(teacher_folder(config))})


_RECIPE_SECTIONS = ("data", "teacher", "student", "loss", "augment")


def student_recipe(config: Config) -> dict[str, Any]:
    """What a trained student depends on: the config sections it reads (less how many threads ran it), and the
    teacher's weights."""
    source, gguf_file = teacher_source(config) if not config.teacher.finetune or has_model_folder(
        teacher_folder(config)) else (config.teacher.name_or_path, None)
    recipe = {section: getattr(config, section).model_dump(mode="json") for section in _RECIPE_SECTIONS}
    recipe["data"].pop("skip_bad_rows")
    for role in ("teacher", "student"):
        recipe[role]["train"].pop("num_threads")
    recipe["teacher_identity"] = model_identity(source, gguf_file)
    return recipe


def finished_student(config: Config) -> dict[str, Any] | None:
    """The run's student meta when it was trained with this very recipe and its metrics were written, else None."""
    folder = config.run_dir / "student"
    if not (has_model_folder(folder) and (config.run_dir / "metrics.json").is_file()):
        return None
    meta = read_model_meta(folder)
    return meta if meta.get("recipe") == student_recipe(config) else None


def data_summary(splits: DataSplits, transfer: TransferSet | None = None) -> dict[str, Any]:
    """Row counts and fingerprints of what a model was trained and judged on (model folder meta)."""
    summary = {"train": len(splits.train), "dev": len(splits.dev), "transfer": len(transfer or []),
               "train_fingerprint": splits.train.fingerprint(), "dev_fingerprint": splits.dev.fingerprint()}
    if splits.validation is not None:
        summary |= {"validation": len(splits.validation), "validation_fingerprint": splits.validation.fingerprint(),
                    "dropped_for_validation": splits.train.dropped_for_validation}
    return summary


def training_rows(config: Config, splits: DataSplits, transfer: TransferSet | None,
                  cached: CachedLogits) -> tuple[list[str], list[int], np.ndarray]:
    """Gold rows, then transfer rows: unlabelled (IGNORE_LABEL) or with the teacher's argmax as label.

    Without gold logits (no term distils the gold rows) zeros hold their place in the logit column: a
    term whose gold weight is 0 never reads them.
    """
    if transfer is None:
        gold_logits = cached.train
        if gold_logits is None:
            gold_logits = np.zeros((len(splits.train), len(config.data.labels)), dtype=np.float32)
        return splits.train.texts, splits.train.labels, gold_logits
    gold_logits = cached.train
    if gold_logits is None:
        gold_logits = np.zeros((len(splits.train), cached.transfer.shape[1]), dtype=np.float32)
    if config.augment.teacher_labels == "hard":
        transfer_labels = cached.transfer.argmax(axis=1).tolist()
    else:
        transfer_labels = [IGNORE_LABEL] * len(transfer)
    print(f"[student] {len(splits.train):,} gold rows + {len(transfer):,} transfer rows "
          f"({config.augment.teacher_labels} teacher labels)")
    return (splits.train.texts + transfer.texts, splits.train.labels + transfer_labels,
            np.concatenate([gold_logits, cached.transfer]))


def _teacher_depth(config: Config) -> int:
    source, gguf_file = teacher_source(config)
    return AutoConfig.from_pretrained(source, **({"gguf_file": gguf_file} if gguf_file else {})).num_hidden_layers


def _signals(config: Config, loss: LossComposition, context: SignalContext, splits: DataSplits,
             transfer: TransferSet | None, train_logits: np.ndarray) -> dict[str, np.ndarray]:
    """Every teacher signal the loss terms declared, one row per training row (gold, then transfer)."""
    signals = {}
    for signal in loss.signals(context):
        if signal == LOGITS:
            signals[signal.name] = train_logits
        else:
            signals[signal.name] = teacher_pooled_signal(config, splits, signal, transfer)
    return signals


def _write_predictions(path: Path, splits: DataSplits, labels: list[str], teacher_probs: np.ndarray,
                       student_probs: np.ndarray) -> None:
    with atomic_path(path) as temp, open(temp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"] + [f"teacher_prob_{n}" for n in labels] + [f"student_prob_{n}" for n in labels])
        for text, label, t_row, s_row in zip(splits.dev.texts, splits.dev.labels, teacher_probs, student_probs):
            writer.writerow([text, label] + [f"{p:.6f}" for p in t_row] + [f"{p:.6f}" for p in s_row])


def run_distill_stage(config: Config, resume: bool = False, parent_run_id: str | None = None,
                      force: bool = False) -> TrainOutcome | None:
    """Train the student from cached teacher signals (the teacher is loaded only if the cache is missing).
    A student already trained with this recipe is kept, and said so (None); `force` trains it again.
    `parent_run_id`: the MLflow run to nest under when the caller's run lives in another process."""
    if not force and (done := finished_student(config)) is not None:
        print(f"[student] {config.run_dir / 'student'} is already trained with this recipe (dev accuracy "
              f"{done.get('metrics', {}).get('accuracy', float('nan')):.4f}): kept; --force trains it again")
        return None
    start_run_folder(config)
    splits = run_splits(config)
    transfer = load_transfer_set(config, splits.train)
    cached = teacher_logits(config, splits, transfer=transfer)
    train_texts, train_labels, train_logits = training_rows(config, splits, transfer, cached)
    set_seed(config.student.train.seed)  # the new head and LoRA weights start the same in every run
    loaded = build_model(student_model_config(config), config.data.labels)
    loss = build_loss(config.loss.resolved_terms(), config.loss.temperature, config.loss.modules)
    cut_from_teacher = config.student.name_or_path in (RUN_TEACHER, config.teacher.name_or_path)
    context = SignalContext(loaded.model, lambda: _teacher_depth(config),
                            config.student.keep_layers if cut_from_teacher else None)
    signals = _signals(config, loss, context, splits, transfer, train_logits)
    loss.bind(context, signals)
    meta = {"role": "student", "labels": config.data.labels, "base_model": config.student.name_or_path,
            "teacher_base_model": config.teacher.name_or_path, "run_name": config.name,
            "loss": {"temperature": config.loss.temperature, "terms": config.loss.resolved_terms()},
            "data": data_summary(splits, transfer), "recipe": student_recipe(config)}
    with stage_run(config, "student", resume, parent_run_id) as tracker:
        meta["mlflow_run_id"] = tracker.run_id  # lets a served model name its source run
        training = DataSplits(LabeledTexts(train_texts, train_labels, "gold+transfer"), splits.dev, splits.validation)
        outcome = fine_tune(loaded, config.student, training, config.run_dir / "student", meta, loss=loss,
                            train_signals=signals, dev_teacher_logits=cached.dev,
                            validation_teacher_logits=cached.validation, callbacks=tracker.trainer_callbacks(),
                            resume=resume)
        if not is_main_process():
            return outcome
        write_json(config.run_dir / "metrics.json",
                   {"history": outcome.history, "final": outcome.final, "teacher": cached.teacher_dev_metrics,
                    **({"teacher_validation": cached.teacher_validation_metrics} if splits.validation else {}),
                    "parameters": outcome.parameters, "train_seconds": outcome.train_seconds,
                    "data": meta["data"]})
        if not (config.run_dir / "teacher_metrics.json").is_file():
            write_json(config.run_dir / "teacher_metrics.json", {"final": cached.teacher_dev_metrics})
        _write_predictions(config.run_dir / "predictions_dev.csv", splits, config.data.labels,
                           softmax(cached.dev), softmax(outcome.dev_logits))
        write_model_card(outcome.model_dir, config.run_dir, with_summary=False)
        if splits.validation is not None:
            print(f"[student] validation accuracy {outcome.final['validation']['accuracy']:.4f} "
                  f"(teacher {cached.teacher_validation_metrics.get('accuracy', float('nan')):.4f} on its cached logits)")
        print(f"[student] dev accuracy {outcome.final['accuracy']:.4f} "
              f"(teacher {cached.teacher_dev_metrics.get('accuracy', float('nan')):.4f} on its cached logits), saved to "
              f"{outcome.model_dir}")
        log_stage_outputs(tracker, config.run_dir)
    return outcome
