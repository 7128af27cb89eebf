"""How fast the tuned teacher labels a transfer set on this machine: PyTorch eager (fp32), PyTorch with
bf16 autocast, and onnxruntime (the project's own fp32 export), each on the same sentences, length-sorted
by the Predictor, in one process so that the ratios are comparable.

    python benchmarks/teacher_inference.py outputs/best-cpu/teacher --n 2000 --out benchmarks/teacher_inference.md
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from llmneo.config import default_data_dir
from llmneo.data import read_labeled_file
from llmneo.inference import Predictor
from llmneo.inference.export import default_export_dir, export_model


def _timed(predictor: Predictor, texts: list[str], batch_size: int) -> tuple[np.ndarray, float]:
    predictor.predict_logits(texts[:batch_size], batch_size)  # warm-up
    started = time.perf_counter()
    logits = predictor.predict_logits(texts, batch_size, progress=f"{predictor.backend_name}")
    return logits, len(texts) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("teacher", type=Path, help="the tuned teacher's model folder")
    parser.add_argument("--n", type=int, default=2000, help="training sentences to label")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/teacher_inference.md"))
    args = parser.parse_args()
    labels = json.loads((args.teacher / "llmneo_model.json").read_text())["labels"]
    texts = read_labeled_file(Path(default_data_dir()) / "train.tsv", labels).texts[: args.n]
    onnx_dir = default_export_dir(args.teacher, "none")
    if not (onnx_dir / "llmneo_model.json").is_file():
        export_model(args.teacher, out_dir=onnx_dir)
    rows = {}
    reference, rows["PyTorch eager, fp32"] = _timed(Predictor.load(args.teacher), texts, args.batch_size)
    variants = {"PyTorch, bf16 autocast": Predictor.load(args.teacher, mixed_precision="bf16"),
                "onnxruntime, fp32 export": Predictor.load(onnx_dir, backend="onnx")}
    agreement = {"PyTorch eager, fp32": 1.0}
    for name, predictor in variants.items():
        logits, rows[name] = _timed(predictor, texts, args.batch_size)
        agreement[name] = float(np.mean(logits.argmax(1) == reference.argmax(1)))
    lines = [(f"Teacher `{args.teacher}` labelling {len(texts):,} SST-2 training sentences, batch {args.batch_size}, "
              "length-sorted, one process, 2 CPU cores."), "",
             "| backend | sentences/s | vs eager | label agreement with eager |", "| --- | --- | --- | --- |"]
    base = rows["PyTorch eager, fp32"]
    lines += [f"| {name} | {speed:.1f} | {speed / base:.2f}x | {agreement[name]:.4f} |" for name, speed in rows.items()]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
