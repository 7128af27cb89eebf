"""The export and benchmark commands: export, bench, prune."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from llmneo.cli import (
    MODEL_HELP,
    ModelArgument,
    OptionalConfigOption,
    SetOption,
    app,
    fail,
    load,
    user_errors,
)

DevDataOption = Annotated[Path | None, typer.Option("--data", help="Labelled dev file (default: SST-2 dev.tsv).")]
MaxExamplesOption = Annotated[int | None, typer.Option(min=1, help="Use only the first N dev texts.")]


@app.command()
def export(
    model: Annotated[str | None, typer.Argument(
        metavar="[MODEL]", help=f"{MODEL_HELP} A run folder's student is exported. Default with --config: its run "
        "folder.", show_default=False)] = None,
    config: OptionalConfigOption = None,
    set_: SetOption = None,
    format_: Annotated[str | None, typer.Option("--format", help="Export format (onnx; config export.format).")] = None,
    quantize: Annotated[str | None, typer.Option(
        help="none or int8, dynamic per channel (config export.quantize, default none).")] = None,
    min_agreement: Annotated[float | None, typer.Option(
        help="Least label agreement with PyTorch on dev to keep the export "
        "(config export.min_agreement_fp32 / _int8, default 1.0 / 0.99).")] = None,
    data: DevDataOption = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default PATH/export/onnx-fp32|onnx-int8).")] = None,
    max_examples: MaxExamplesOption = None,
    opset: Annotated[int | None, typer.Option(min=11, help="ONNX opset (config export.opset, default 17).")] = None,
) -> None:
    """Export the student to ONNX (LoRA merged), optionally int8, checked against PyTorch on dev.

    With --config, the config's `export` section gives the defaults and its run folder the PATH;
    options given on the command line win.
    """
    from llmneo.config import ExportConfig
    from llmneo.inference.export import ExportRefused, export_model
    from llmneo.serve.model_source import MLFLOW_SCHEMES, fetch_model

    cfg = load(config, set_, checks="sections") if config else None
    settings = cfg.export if cfg else ExportConfig()
    if format_ is not None and format_ != "onnx":
        fail(f"--format {format_}: only onnx is supported")
    if model is None:
        if cfg is None:
            fail("export needs MODEL or --config")
        model = str(cfg.run_dir)
    if model.startswith(MLFLOW_SCHEMES) and out is None:
        fail(f"export {model}: an MLflow model is exported to --out DIR (its download folder is not yours to write)")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    with user_errors():
        path = fetch_model(model, backend="torch")[0] if model.startswith(MLFLOW_SCHEMES) else Path(model)
        if not path.exists():
            raise FileNotFoundError(f"MODEL {model}: no such folder")
        try:
            report = export_model(path, quantize=quantize, out_dir=out, data_path=data, min_agreement=min_agreement,
                                  max_examples=max_examples, opset=opset, settings=settings)
        except ExportRefused as refused:
            fail(str(refused))
    typer.echo(f"exported to {report.folder}")


@app.command()
def bench(
    run_dir: Annotated[Path | None, typer.Argument(
        metavar="[MODEL]", help="A run folder (outputs/<name>): its teacher and student are measured side by side; "
        "or give --config.", show_default=False)] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Experiment YAML naming the run.")] = None,
    set_: SetOption = None,
    data: DevDataOption = None,
    out: Annotated[Path | None, typer.Option(
        help="Folder for everything bench writes: bench.md/png/json and any export it makes (default: the run "
        "folder).")] = None,
    max_examples: MaxExamplesOption = None,
    threads: Annotated[int | None, typer.Option(min=1, help="Threads at batch 32 (default: all cores).")] = None,
    latency_threads: Annotated[int, typer.Option(min=1, help="Threads at batch 1.")] = 1,
    tracking: Annotated[bool | None, typer.Option("--tracking/--no-tracking",
                                                  help="Log to MLflow (default: the config's setting).")] = None,
) -> None:
    """Teacher vs student (torch, ONNX fp32, ONNX int8): accuracy, size, memory, latency, throughput, FLOP/s."""
    from llmneo.bench.run import bench as run_bench
    from llmneo.bench.run import resolve_inputs
    from llmneo.config import TrackingConfig

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    cfg = load(config, set_, checks="sections") if config else None
    with user_errors():
        folder, dev, cfg = resolve_inputs(run_dir, cfg)
        track = cfg.tracking if cfg else TrackingConfig()
        if tracking is not None:
            track = track.model_copy(update={"enabled": tracking})
        run_bench(folder, data or dev, out_dir=out, max_examples=max_examples, num_threads=threads,
                  latency_threads=latency_threads, tracking=track, run_name=cfg.name if cfg else folder.name,
                  export_settings=cfg.export if cfg else None)
    typer.echo((Path(out or folder) / "bench.md").read_text())


@app.command()
def prune(
    model: ModelArgument,
    texts: Annotated[list[Path], typer.Option(
        "--texts", help="Files of the texts the model will read (training and unlabelled; repeatable): their "
        "tokens are kept.", show_default=False)],
    out: Annotated[Path, typer.Option(help="Folder for the pruned model.", show_default=False)],
    check: Annotated[Path | None, typer.Option(
        help="Texts (dev) on which the pruned model is compared with the original.")] = None,
    text_column: Annotated[str | None, typer.Option(help="Column holding the text (default sentence or text).")] = None,
) -> None:
    """Prune the token table to the tokens some texts use: a smaller model with the same logits on every text
    whose tokens were all kept, checked on --check."""
    from llmneo.data.files import read_texts
    from llmneo.inference.vocab import prune_vocabulary
    from llmneo.serve.model_source import fetch_model

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    with user_errors():
        folder = fetch_model(model, backend="torch")[0]  # a run folder's student, or an MLflow model
        kept_texts = [text for path in texts for _, text in read_texts(path, text_column)]
        check_texts = [text for _, text in read_texts(check, text_column)] if check else []
        report = prune_vocabulary(folder, kept_texts, out, check_texts)
    typer.echo(f"pruned to {report.folder}: {report.kept:,} of {report.of:,} tokens kept, parameters "
               f"{report.parameters_before:,} -> {report.parameters_after:,}")
    if report.check_texts:
        typer.echo(f"on {report.check_texts:,} check texts: {report.texts_with_a_dropped_token:,} need a dropped "
                   f"token; on the rest the largest logit difference is {report.largest_logit_difference:.2e}; "
                   f"{report.identical_predictions:.2%} of all predictions unchanged")
