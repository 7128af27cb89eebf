"""Using a trained model: predict (texts, a file or stdin) and evaluate (a labelled file)."""

from __future__ import annotations

import json
import math
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from llmneo.cli import ModelArgument, SkipBadRows, app, fail, user_errors


class Backend(str, Enum):
    auto = "auto"
    torch = "torch"
    onnx = "onnx"


BackendOption = Annotated[Backend, typer.Option(
    help="auto: as `llmneo serve` picks (a run folder's checked int8 export, then fp32, then torch); or torch, onnx.")]


def load_predictor(model: str, backend: Backend):
    """The Predictor for MODEL: a run folder (by backend), a model folder, or an MLflow URI (downloaded once)."""
    from llmneo.inference import Predictor
    from llmneo.serve.model_source import fetch_model

    folder, _ = fetch_model(model, backend=backend.value)
    return Predictor.load(folder, backend=backend.value)


def _input_texts(texts: list[str], file: Path | None, text_column: str | None) -> tuple[list[str], list[str]]:
    """The texts to label and where each came from (for error messages): arguments, `-` (stdin), or --file."""
    from llmneo.data import read_texts

    if file is not None and texts:
        fail("give texts as arguments or --file, not both")
    if file == Path("-"):  # the Unix convention, as the positional `-`
        file, texts = None, ["-"]
    if file is not None:
        rows = read_texts(file, text_column)
        return [text for _, text in rows], [f"{file}:{line}" for line, _ in rows]
    if "-" in texts and texts != ["-"]:
        fail("`-` reads stdin: give it alone, not beside other texts")
    if texts == ["-"]:
        lines = sys.stdin.read().splitlines()
        return lines, [f"stdin line {number}" for number in range(1, len(lines) + 1)]
    if not texts:
        fail("nothing to label: give texts, `-` to read stdin, or --file FILE")
    return texts, [f"text {number}" for number in range(1, len(texts) + 1)]


def _write_out(out: Path, rows: list[dict[str, Any]], labels: list[str]) -> None:
    from llmneo.atomic import write_text_atomic

    if out.suffix.lower() == ".csv":
        import csv
        import io

        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["text", "label", *[f"prob_{name}" for name in labels]])
        for row in rows:
            writer.writerow([row["text"], row["label"], *[f"{p:.6f}" for p in row["probs"]]])
        write_text_atomic(out, buffer.getvalue())
    elif out.suffix.lower() in (".jsonl", ".json"):
        write_text_atomic(out, "".join(json.dumps(row) + "\n" for row in rows))
    else:
        fail(f"--out {out}: write .jsonl or .csv")


def _print_table(rows: list[dict[str, Any]], labels: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(show_edge=False)
    table.add_column("label")
    for name in labels:
        table.add_column(f"P({name})", justify="right")
    table.add_column("text", overflow="ellipsis", no_wrap=True, max_width=80)
    for row in rows:
        table.add_row(row["label"], *[f"{p:.3f}" for p in row["probs"]], row["text"])
    Console().print(table)


@app.command()
def predict(
    model: ModelArgument,
    texts: Annotated[list[str] | None, typer.Argument(help="Texts to classify; `-` reads one per line from stdin.",
                                                      show_default=False)] = None,
    file: Annotated[Path | None, typer.Option(
        "--file", "-f", help="Texts to classify: a .txt file (one per line) or a TSV/CSV/JSONL/Parquet table.")] = None,
    text_column: Annotated[str | None, typer.Option(help="The table's text column (default: sentence or text).")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write the predictions to a .jsonl or .csv file.")] = None,
    backend: BackendOption = Backend.auto,
    calibrate: Annotated[bool, typer.Option(help="Divide the logits by the temperature fitted on dev.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line on stdout.")] = False,
    batch_size: Annotated[int, typer.Option(min=1, help="Texts per forward pass.")] = 32,
    max_text_chars: Annotated[int, typer.Option(min=1, help="Longest accepted text, as the server's limit.")] = 2000,
) -> None:
    """Label texts: the class and its probabilities per text, as a table, JSON lines, or a file.

    Blank texts and texts over --max-text-chars are refused (as /predict refuses them); texts longer than
    the model's max_length tokens are truncated by its tokenizer, as in the server.
    """
    from llmneo.inference.texts import check_texts
    from llmneo.progress import progress

    with user_errors():
        given, names = _input_texts(list(texts or []), file, text_column)
        check_texts(given, max_text_chars, names)
        predictor = load_predictor(model, backend)
        rows = []
        chunks = range(0, len(given), 512)
        for start in progress(chunks, f"predicting {len(given):,} texts", unit="chunk") if len(given) > 512 else chunks:
            chunk = given[start:start + 512]
            for text, prediction in zip(chunk, predictor.predict(chunk, calibrate=calibrate, batch_size=batch_size)):
                rows.append({"text": text, "label": prediction.label, "pred": prediction.pred,
                             "probs": [round(float(p), 6) for p in prediction.probs]})
        if out is not None:
            _write_out(out, rows, predictor.labels)
            typer.echo(f"{len(rows):,} predictions written to {out} ({predictor.backend_name} backend, "
                       f"{predictor.model_dir})", err=True)
        elif as_json or not sys.stdout.isatty():
            for row in rows:
                typer.echo(json.dumps(row))
        else:
            _print_table(rows, predictor.labels)


def _json_safe(metrics: dict[str, Any]) -> dict[str, Any]:
    """NaN is not JSON: each becomes null, with the reason beside it (`<name>_note`)."""
    safe: dict[str, Any] = {}
    for name, value in metrics.items():
        if isinstance(value, float) and math.isnan(value):
            safe[name] = None
            safe[f"{name}_note"] = "undefined: the file holds one class" if name == "roc_auc" else "undefined"
        elif isinstance(value, dict):
            safe[name] = _json_safe(value)
        else:
            safe[name] = value
    return safe


@app.command()
def evaluate(
    model: ModelArgument,
    data: Annotated[Path, typer.Option("--data", help="Labelled TSV/CSV/JSONL/Parquet file.")],
    text_column: Annotated[str, typer.Option(help="Column holding the text.")] = "sentence",
    label_column: Annotated[str, typer.Option(help="Column holding the label (an id or a label name).")] = "label",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
    backend: BackendOption = Backend.auto,
    batch_size: Annotated[int, typer.Option(min=1, help="Texts per forward pass.")] = 32,
    skip_bad_rows: SkipBadRows = False,
) -> None:
    """Score a model on a labelled file: accuracy, macro/weighted F1, ROC-AUC, and each class's figures."""
    import numpy as np

    from llmneo.data import describe_bad_rows, read_labeled_file
    from llmneo.maths.metrics import classification_metrics, per_class_metrics

    with user_errors():
        predictor = load_predictor(model, backend)
        rows = read_labeled_file(data, predictor.labels, text_column, label_column, skip_bad_rows)
        if (line := describe_bad_rows(rows)) is not None:
            typer.echo(line, err=True)
        probs = predictor.predict_proba(rows.texts, batch_size=batch_size)
    labels = np.asarray(rows.labels)
    metrics = classification_metrics(labels, probs)
    classes = per_class_metrics(labels, probs.argmax(axis=1), predictor.labels)
    if as_json:
        typer.echo(json.dumps(_json_safe({**metrics, "per_class": classes})))
        return
    for name, value in metrics.items():
        shown = "undefined (one class in the file)" if isinstance(value, float) and math.isnan(value) else (
            f"{value:.4f}" if isinstance(value, float) else str(value))
        typer.echo(f"{name:>12}: {shown}")
    _print_classes(classes)


def _print_classes(classes: dict[str, dict[str, float]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="per class", show_edge=False)
    for column in ("class", "precision", "recall", "F1", "support"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for name, figures in classes.items():
        table.add_row(name, f"{figures['precision']:.4f}", f"{figures['recall']:.4f}", f"{figures['f1']:.4f}",
                      str(figures["support"]))
    Console().print(table)
