"""The pipeline commands: teacher, cache, distill, run; evaluate and predict on saved models."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from llmneo.cli import (
    ConfigOption,
    ResumeOption,
    SetOption,
    SkipBadRows,
    app,
    load,
    user_errors,
)


@app.command()
def teacher(config: ConfigOption, set_: SetOption = None, resume: ResumeOption = False,
            skip_bad_rows: SkipBadRows = False) -> None:
    """Prepare the teacher: fine-tune it on the training data unless it is already a task classifier."""
    from llmneo.training.pipeline import run_teacher_stage

    cfg = load(config, set_, skip_bad_rows)
    with user_errors():
        run_teacher_stage(cfg, resume)


@app.command()
def cache(config: ConfigOption, set_: SetOption = None, skip_bad_rows: SkipBadRows = False) -> None:
    """Compute and store the teacher's logits for the training and dev data (resumes if interrupted)."""
    from llmneo.training.pipeline import run_cache_stage

    cfg = load(config, set_, skip_bad_rows)
    with user_errors():
        run_cache_stage(cfg)


@app.command()
def augment(config: ConfigOption, set_: SetOption = None, skip_bad_rows: SkipBadRows = False) -> None:
    """Build the transfer set (augment.enabled): unlabelled variants of the training texts for the teacher."""
    from llmneo.training.pipeline import run_augment_stage

    cfg = load(config, [*(set_ or []), "augment.enabled=true"], skip_bad_rows)
    with user_errors():
        run_augment_stage(cfg)


@app.command()
def compare(
    config: ConfigOption,
    set_: SetOption = None,
    minutes: Annotated[float, typer.Option(
        min=0.1, help="Training cap per arm, in minutes of student.train.time_limit_clock (wall or cpu).")] = 10.0,
    arm: Annotated[list[str] | None, typer.Option(
        "--arm", help="'NAME: key=value ...' (repeatable); default: CE gold, KD gold, CE gold + teacher hard "
        "labels on the transfer set, and the configured recipe.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Keep arms that already finished.")] = False,
    jobs: Annotated[int, typer.Option(
        "--jobs", min=1, help="Arms trained at once, each in its own process on cores/jobs threads "
        "(its output in <arm>/train.log).")] = 1,
) -> None:
    """The ablation: one student architecture, several recipes, the same training cap; a table and a chart."""
    from llmneo.training.ablation import default_arms, parse_arm
    from llmneo.training.pipeline import run_compare

    cfg = load(config, set_)
    with user_errors():
        arms = dict(parse_arm(spec) for spec in arm) if arm else default_arms(cfg)
        run_compare(cfg, arms, minutes, resume, jobs)


@app.command()
def distill(config: ConfigOption, set_: SetOption = None, resume: ResumeOption = False,
            skip_bad_rows: SkipBadRows = False) -> None:
    """Train the student with KD + LoRA from the cached teacher logits."""
    from llmneo.training.pipeline import run_distill_stage

    cfg = load(config, set_, skip_bad_rows)
    with user_errors():
        run_distill_stage(cfg, resume)


@app.command()
def run(config: ConfigOption, set_: SetOption = None, resume: ResumeOption = False,
        skip_bad_rows: SkipBadRows = False) -> None:
    """The whole pipeline: teacher -> cache -> distill -> evaluate, with a summary table."""
    from llmneo.training.pipeline import run_pipeline

    cfg = load(config, set_, skip_bad_rows)
    with user_errors():
        run_pipeline(cfg, resume)


@app.command()
def evaluate(
    model_dir: Annotated[Path, typer.Argument(help="A model folder, run folder or exported folder.")],
    data: Annotated[Path, typer.Option("--data", help="Labelled TSV/CSV/JSONL/Parquet file.")],
    text_column: Annotated[str, typer.Option(help="Column holding the text.")] = "sentence",
    label_column: Annotated[str, typer.Option(help="Column holding the label.")] = "label",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
    backend: Annotated[str, typer.Option(help="auto, torch or onnx.")] = "auto",
    batch_size: Annotated[int, typer.Option(help="Texts per forward pass.")] = 32,
    skip_bad_rows: SkipBadRows = False,
) -> None:
    """Score a saved model on a labelled file: accuracy, precision, recall, F1, ROC-AUC."""
    import numpy as np

    from llmneo.data import describe_bad_rows, read_labeled_file
    from llmneo.inference import Predictor
    from llmneo.maths.metrics import classification_metrics

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    with user_errors():
        predictor = Predictor.load(model_dir, backend=backend)
        rows = read_labeled_file(data, predictor.labels, text_column, label_column, skip_bad_rows)
        if (line := describe_bad_rows(rows)) is not None:
            typer.echo(line, err=True)
        probs = predictor.predict_proba(rows.texts, batch_size=batch_size)
    metrics = classification_metrics(np.asarray(rows.labels), probs)
    if as_json:
        typer.echo(json.dumps(metrics))
        return
    for name, value in metrics.items():
        typer.echo(f"{name:>10}: {value:.4f}" if isinstance(value, float) else f"{name:>10}: {value}")


@app.command()
def predict(
    model_dir: Annotated[Path, typer.Argument(help="A model folder, run folder or exported folder.")],
    texts: Annotated[list[str], typer.Argument(help="Texts to classify.")],
    backend: Annotated[str, typer.Option(help="auto, torch or onnx.")] = "auto",
    calibrate: Annotated[bool, typer.Option(help="Apply the fitted temperature.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Print the label and class probabilities of each text."""
    from llmneo.inference import Predictor

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    with user_errors():
        predictor = Predictor.load(model_dir, backend=backend)
        predictions = predictor.predict(texts, calibrate=calibrate)
    for text, prediction in zip(texts, predictions):
        if as_json:
            typer.echo(json.dumps({"text": text, **prediction.__dict__}))
        else:
            probs = "  ".join(f"{name}={p:.3f}" for name, p in zip(predictor.labels, prediction.probs))
            typer.echo(f"{prediction.label:<10} {probs}  {text}")




@app.command("config-reference")
def config_reference() -> None:
    """Print every config key with its type, default and what it does (the text of docs/CONFIG.md)."""
    from llmneo.config.reference import render_reference

    typer.echo(render_reference())
