"""The student-size sweep: sweep (train several students, benchmark them, draw the frontier, pick one)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from llmneo.cli import ConfigOption, SetOption, SkipBadRows, app, fail, load, user_errors


@app.command()
def sweep(
    config: ConfigOption,
    set_: SetOption = None,
    students: Annotated[Path | None, typer.Option(
        "--students", help="YAML file of students ({students: {NAME: {key: value, ...}}}); default: the shipped six "
        "(llmneo/experiments/presets/students.yaml): MiniLM-L6 cut to 1, 2, 3, 6 layers, with LoRA, and SmolLM2-135M "
        "with the reference LoRA recipe.")] = None,
    student: Annotated[list[str] | None, typer.Option(
        "--student", help="'NAME: key=value ...', or the NAME of a student of the students file (repeatable): "
        "only these.")] = None,
    minutes: Annotated[float | None, typer.Option(min=0.1, help="Wall-clock training cap per student.")] = 10.0,
    cap: Annotated[list[str] | None, typer.Option(
        "--cap", help="'NAME=MINUTES': this student's own cap (repeatable).")] = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="Retrain and re-measure every student.")] = False,
    max_examples: Annotated[int | None, typer.Option(min=1, help="Benchmark on the first N dev texts.")] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="Threads at batch 32 (default: all cores).")] = None,
    latency_threads: Annotated[int, typer.Option(min=1, help="Threads at batch 1.")] = 1,
    pick: Annotated[str | None, typer.Option(
        "--pick", help="'min_accuracy=0.90[,max_latency_ms=5][,min_throughput=500][,by=latency|throughput]': "
        "name the fastest student meeting the bars (speed bars alone: the most accurate); accuracy is read on "
        "the validation split when the students carve one (data.validation_size), else on dev.")] = None,
    max_latency_ms: Annotated[float | None, typer.Option(
        help="Shorthand for --pick max_latency_ms=X (combines with --pick).")] = None,
    promote: Annotated[bool, typer.Option("--promote", help="Register the picked student and make it the "
                                          "registry's champion.")] = False,
    skip_bad_rows: SkipBadRows = False,
) -> None:
    """Several students from one teacher and cache: each trained, benchmarked (torch, ONNX fp32, int8), drawn
    as an accuracy/speed frontier (frontier.png, frontier.md), and optionally one picked for a bar."""
    from llmneo.experiments.arms import load_arms
    from llmneo.experiments.sweep import parse_cap, parse_student, run_sweep
    from llmneo.experiments.sweep_rows import BenchSettings
    from llmneo.maths.frontier import parse_pick

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    cfg = load(config, set_, skip_bad_rows)
    with user_errors(resumable=True):
        defaults = load_arms(students, "students")
        chosen = dict(parse_student(spec, defaults) for spec in student) if student else defaults
        for spec in cap or []:
            name, value = parse_cap(spec, chosen)
            chosen[name] = {**chosen[name], "student.train.time_limit_minutes": value}
        bars = [part for part in (pick, f"max_latency_ms={max_latency_ms}" if max_latency_ms else None) if part]
        rule = parse_pick(",".join(bars)) if bars else None
        outcome = run_sweep(cfg, chosen, minutes, fresh, BenchSettings(max_examples, threads, latency_threads),
                            rule, promote)
    typer.echo((outcome.run_dir / "frontier.md").read_text())
    typer.echo(f"sweep finished in {outcome.wall_seconds / 60:.1f} min; frontier.png, frontier.md and frontier.json "
               f"in {outcome.run_dir}")
    if outcome.picked is not None:
        choice = outcome.picked["choice"]
        if choice is None:
            fail(f"no student meets {outcome.picked['rule']}")
        validation = choice.get("validation_accuracy")
        chosen_on = f"validation accuracy {validation:.4f}, " if outcome.picked["accuracy"] == "validation" else ""
        typer.echo(f"pick ({outcome.picked['rule']}): {choice['name']} on {choice['backend']}: {chosen_on}"
                   f"dev accuracy {choice['accuracy']:.4f}, p50 {choice['latency_p50_ms']:.2f} ms, {choice['throughput']:.0f} "
                   f"sentences/s, folder {outcome.run_dir / 'sweep' / choice['name']}")
        if outcome.promoted_version:
            typer.echo(f"{cfg.tracking.registered_model_name} version {outcome.promoted_version} is now @champion")
