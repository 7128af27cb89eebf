"""The teacher stage: tune the teacher on the labelled data, or use it as it is.

A tuned teacher is reused by later runs while its recipe (the teacher and data config) is unchanged, so
`llmneo run` resumes by stage; the recipe is recorded in the folder's `llmneo_model.json`.
"""

from __future__ import annotations

from pathlib import Path

from transformers import set_seed

from llmneo.config import Config, DataConfig, TeacherConfig
from llmneo.config.recipe import field_defaults, recipe_matches
from llmneo.data import load_splits
from llmneo.modelfolder import has_model_folder, read_model_meta
from llmneo.training.distributed import is_main_process
from llmneo.training.models import build_model
from llmneo.training.stage import stage_run, start_run_folder, write_json
from llmneo.training.trainer import TrainOutcome, fine_tune

__all__ = ["prepare_teacher", "run_teacher_stage", "teacher_folder", "teacher_recipe"]


def teacher_folder(config: Config) -> Path:
    return config.run_dir / "teacher"


def prepare_teacher(config: Config, callbacks=None, resume: bool = False, force: bool = False) -> TrainOutcome | None:
    """Fine-tune the teacher on the training data; nothing to do when it is already a task classifier."""
    if not config.teacher.finetune:
        print(f"[teacher] {config.teacher.name_or_path} is used as is (teacher.finetune: false)")
        return None
    recipe = teacher_recipe(config)
    folder = teacher_folder(config)
    if not force and has_model_folder(folder) and _same_teacher_recipe(read_model_meta(folder).get("recipe"), recipe):
        accuracy = read_model_meta(folder).get("metrics", {}).get("accuracy", float("nan"))
        print(f"[teacher] {folder} is already tuned with this teacher and data config (dev accuracy {accuracy:.4f}): "
              "kept; --force tunes it again")
        return None
    splits = load_splits(config.data, config.teacher.train.max_train_samples)
    set_seed(config.teacher.train.seed)  # the new head starts the same in every run
    loaded = build_model(config.teacher, config.data.labels)
    data = {"train": len(splits.train), "dev": len(splits.dev), "train_fingerprint": splits.train.fingerprint(),
            "dev_fingerprint": splits.dev.fingerprint()}
    if splits.validation is not None:
        data |= {"validation": len(splits.validation), "validation_fingerprint": splits.validation.fingerprint()}
    meta = {"role": "teacher", "labels": config.data.labels, "base_model": config.teacher.name_or_path,
            "run_name": config.name, "recipe": recipe, "data": data}
    return fine_tune(loaded, config.teacher, splits, teacher_folder(config), meta, callbacks=callbacks,
                     resume=resume)


def _report_headroom(config: Config, outcome: TrainOutcome) -> None:
    """headroom.json and one line: the teacher against a cheap proxy of what its student learns from the labels
    alone. Skipped for a student cut from the teacher (it starts from the teacher's own weights)."""
    from llmneo.modelfolder.sources import resolve_model_source
    from llmneo.teacher.headroom import headroom

    if config.student.name_or_path in ("run:teacher", config.teacher.name_or_path):
        return
    splits = load_splits(config.data, config.student.train.max_train_samples)
    judged = outcome.final.get("validation", outcome.final)
    found = headroom(resolve_model_source(config.student.name_or_path), splits, judged["accuracy"],
                     config.student.max_length, config.data.seed)
    write_json(config.run_dir / "headroom.json", found)
    verdict = ("small: KD has little to teach; tune the teacher longer or on more labels, or pick a stronger one"
               if found["small"] else "room for KD")
    print(f"[teacher] headroom on {found['judged_on']}: teacher {found['teacher_accuracy']:.4f} against "
          f"{found['student_probe_accuracy']:.4f} for a linear probe of the student on the labels "
          f"({found['points']:+.1f} points): {verdict}")


def _same_teacher_recipe(saved: dict | None, current: dict) -> bool:
    defaults = {**field_defaults(TeacherConfig, "teacher."), **field_defaults(DataConfig, "data.")}
    return saved is not None and recipe_matches(saved, current, defaults)


def teacher_recipe(config: Config) -> dict:
    """What a tuned teacher depends on: a teacher folder made from the same recipe is reused, not retrained."""
    unread = {"skip_bad_rows"} | ({"max_train_samples"} if config.teacher.train.max_train_samples else set())
    data = config.data.model_dump(mode="json", exclude=unread)
    return {"teacher": config.teacher.model_dump(mode="json"), "data": data}


def run_teacher_stage(config: Config, resume: bool = False, force: bool = False) -> TrainOutcome | None:
    start_run_folder(config)
    with stage_run(config, "teacher", resume) as tracker:
        outcome = prepare_teacher(config, callbacks=tracker.trainer_callbacks(), resume=resume, force=force)
        if outcome is not None and is_main_process():
            write_json(config.run_dir / "teacher_metrics.json",
                       {"history": outcome.history, "final": outcome.final, "parameters": outcome.parameters,
                        "train_seconds": outcome.train_seconds})
            chosen = (f"validation accuracy {outcome.final['validation']['accuracy']:.4f}, "
                      if "validation" in outcome.final else "")
            print(f"[teacher] {chosen}dev accuracy {outcome.final['accuracy']:.4f}, saved to {outcome.model_dir}")
            _report_headroom(config, outcome)
        from llmneo.tracking.runlog import log_stage_outputs

        log_stage_outputs(tracker, config.run_dir)
    return outcome
