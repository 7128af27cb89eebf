"""The saved-model folder (docs/CONTRACTS.md, "Model folder"): the one owner of its file names and meta.

Every reader and writer of a model folder imports its names from here: ``META_FILE``
(``llmneo_model.json``), ``ADAPTER_DIR``, ``ONNX_FILE``; ``read_model_meta``/``write_model_meta``;
``load_tokenizer`` with the pad set-up every model needs; ``resolve_model_dir`` for a run folder.
This module needs no torch; ``llmneo.modelfolder.weights`` loads and saves the PyTorch weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = [
    "ADAPTER_DIR",
    "EXPORT_DIRS",
    "FORMAT_VERSION",
    "META_FILE",
    "ONNX_FILE",
    "TOKENIZER_CONFIG_FILE",
    "TOKENIZER_FILE",
    "export_passed",
    "has_model_folder",
    "load_tokenizer",
    "read_model_meta",
    "resolve_model_dir",
    "serving_folder",
    "write_model_meta",
]

META_FILE = "llmneo_model.json"
ADAPTER_DIR = "adapter"  # a LoRA adapter beside the weights, loadable with PEFT
ONNX_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"  # the fast tokenizer, readable with `tokenizers` alone
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
FORMAT_VERSION = 1
# A run folder's exports by quantisation (`llmneo export`), fastest first: the order `llmneo serve` tries.
EXPORT_DIRS = {"int8": "export/onnx-int8", "none": "export/onnx-fp32"}


def has_model_folder(folder: str | Path) -> bool:
    return (Path(folder) / META_FILE).is_file()


def export_passed(meta: dict[str, Any]) -> bool:
    """An ONNX folder whose recorded agreement with PyTorch met its threshold (`llmneo export` wrote it)."""
    report = meta.get("export") or {}
    return report.get("agreement", -1.0) >= report.get("min_agreement", 2.0)


def read_model_meta(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / META_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: not an llmneo model folder (no {META_FILE})")
    return json.loads(path.read_text())


def write_model_meta(folder: str | Path, meta: dict[str, Any]) -> Path:
    path = Path(folder) / META_FILE
    path.write_text(json.dumps(meta, indent=2, default=str))
    return path


def resolve_model_dir(path: str | Path) -> Path:
    """A model folder as is; a run folder -> its student (then teacher) model folder."""
    path = Path(path)
    for candidate in (path, path / "student", path / "teacher"):
        if has_model_folder(candidate):
            return candidate
    raise FileNotFoundError(f"{path}: neither an llmneo model folder nor a run folder holding one ({META_FILE})")


def load_tokenizer(source: str | Path, gguf_file: str | None = None) -> Any:
    """Fast tokenizer, with a pad token for decoder models that ship none (Llama does not).

    Right padding: the verbalizer gathers its logits at the last real token.
    """
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=gguf_file) if gguf_file else (
        AutoTokenizer.from_pretrained(source)
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    tokenizer.padding_side = "right"
    return tokenizer


def serving_folder(path: Path, backend: str = "auto") -> Path:
    """The folder to serve for `path`: a model folder as is; for a run folder, by `backend`:
    auto: the checked int8 export, else the checked fp32 one, else the student; onnx: an export or an
    error; torch: the student."""
    if has_model_folder(path) or backend == "torch":
        return resolve_model_dir(path)
    for relative in EXPORT_DIRS.values():
        folder = path / relative
        if has_model_folder(folder) and export_passed(read_model_meta(folder)):
            return folder
    if backend == "onnx":
        raise FileNotFoundError(f"{path}: no ONNX export that passed its agreement check in "
                                f"{' or '.join(EXPORT_DIRS.values())}; run `llmneo export {path} --quantize int8`")
    return resolve_model_dir(path)
