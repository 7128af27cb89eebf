"""The pipeline commands: teacher, augment, cache, distill, run, compare; config-reference."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llmneo.cli import (
    ConfigOption,
    ForceOption,
    ResumeOption,
    SetOption,
    SkipBadRows,
    app,
    load,
    user_errors,
)


@app.command()
def teacher(config: ConfigOption, set_: SetOption = None, resume: ResumeOption = False, force: ForceOption = False,
            skip_bad_rows: SkipBadRows = False) -> None:
    """Prepare the teacher: fine-tune it on the training data unless it is already a task classifier."""
    from llmneo.teacher.tune import run_teacher_stage

    cfg = load(config, set_, skip_bad_rows)
    with user_errors(resumable=True):
        run_teacher_stage(cfg, resume, force)


@app.command()
def augment(config: ConfigOption, set_: SetOption = None, skip_bad_rows: SkipBadRows = False) -> None:
    """Build the transfer set: unlabelled text (the training rows left unlabelled, your own file, or synthetic
    variants) for the teacher to label."""
    from llmneo.transfer.stage import run_augment_stage

    cfg = load(config, [*(set_ or []), "augment.enabled=true"], skip_bad_rows)
    with user_errors():
        run_augment_stage(cfg)


@app.command()
def cache(config: ConfigOption, set_: SetOption = None, skip_bad_rows: SkipBadRows = False) -> None:
    """Compute and store the teacher's logits for the training, validation and dev data (resumes by shard)."""
    from llmneo.cache.stage import run_cache_stage

    cfg = load(config, set_, skip_bad_rows)
    with user_errors(resumable=False):
        run_cache_stage(cfg)


@app.command()
def distill(config: ConfigOption, set_: SetOption = None, resume: ResumeOption = False, force: ForceOption = False,
            skip_bad_rows: SkipBadRows = False) -> None:
    """Train the student from the cached teacher signals (a student already trained with this recipe is kept)."""
    from llmneo.distill.stage import run_distill_stage

    cfg = load(config, set_, skip_bad_rows)
    with user_errors(resumable=True):
        run_distill_stage(cfg, resume, force=force)


@app.command()
def run(config: ConfigOption, set_: SetOption = None, resume: ResumeOption = False, force: ForceOption = False,
        skip_bad_rows: SkipBadRows = False) -> None:
    """The whole pipeline: teacher -> augment -> cache -> distill -> evaluate, then a summary table.
    Finished stages are kept (--force redoes them)."""
    from llmneo.pipeline import run_pipeline

    cfg = load(config, set_, skip_bad_rows)
    with user_errors(resumable=True):
        run_pipeline(cfg, resume, force)


@app.command()
def compare(
    config: ConfigOption,
    set_: SetOption = None,
    minutes: Annotated[float, typer.Option(
        min=0.1, help="Training cap per arm, in minutes of student.train.time_limit_clock (wall or cpu).")] = 10.0,
    arms: Annotated[Path | None, typer.Option(
        "--arms", help="YAML file of arms ({arms: {NAME: {key: value, ...}}}); default: the shipped four (CE on "
        "gold, KD on gold, CE + the teacher's hard labels, the recipe: llmneo/experiments/presets/arms.yaml).")] = None,
    arm: Annotated[list[str] | None, typer.Option(
        "--arm", help="'NAME: key=value ...' (repeatable): arms given inline, instead of --arms.")] = None,
    resume: ResumeOption = False,
    force: Annotated[bool, typer.Option("--force", help="Train again arms already trained with their recipe.")] = False,
    jobs: Annotated[int, typer.Option(
        "--jobs", min=1, help="Arms trained at once, each in its own process on cores/jobs threads "
        "(its output in <arm>/train.log).")] = 1,
    skip_bad_rows: SkipBadRows = False,
) -> None:
    """The ablation: one student architecture, several recipes, the same training cap; a table and a chart."""
    from llmneo.experiments.arms import load_arms, parse_arm
    from llmneo.experiments.compare import run_compare

    cfg = load(config, set_, skip_bad_rows)
    with user_errors(resumable=True):
        chosen = dict(parse_arm(spec) for spec in arm) if arm else load_arms(arms, "arms")
        run_compare(cfg, chosen, minutes, resume, jobs, force)


@app.command("config-reference")
def config_reference() -> None:
    """Print every config key with its type, default and what it does (the text of docs/reference/config.md)."""
    from llmneo.config.reference import render_reference

    typer.echo(render_reference())
