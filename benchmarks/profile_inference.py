"""Where the time goes: profile one model's forward passes at batch 1 and batch 32.

    python benchmarks/profile_inference.py outputs/demo/student                 # torch.profiler table
    python benchmarks/profile_inference.py outputs/demo/export/onnx-int8       # onnxruntime op profile
    python benchmarks/profile_inference.py outputs/demo/student --threads 1

The closing notes of `llmneo bench` runs cite these tables when a target is missed: PyTorch rows
come from `torch.profiler` (self CPU time per aten op), ONNX rows from onnxruntime's own profiler
(time per node type, summed from its JSON trace). Batches are taken from the SST-2 dev set sorted
by length, as the Predictor forms them.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

from llmneo.config import default_data_dir
from llmneo.data import read_labeled_file
from llmneo.inference import Predictor


def _batches(predictor: Predictor, texts: list[str], batch_size: int, count: int) -> list[dict[str, np.ndarray]]:
    """`count` batches from the middle of the length-sorted dev set (typical, not extreme, lengths)."""
    ordered = sorted(texts, key=len)
    middle = len(ordered) // 2
    return [predictor.encode(ordered[middle + i * batch_size: middle + (i + 1) * batch_size]) for i in range(count)]


def profile_torch(predictor: Predictor, batches: list[dict[str, np.ndarray]], rows: int) -> str:
    from torch.profiler import ProfilerActivity, profile

    predictor.backend.logits(batches[0])  # warm-up outside the profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for batch in batches:
            predictor.backend.logits(batch)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def profile_onnx(folder: Path, batches: list[dict[str, np.ndarray]], threads: int | None, rows: int) -> str:
    import onnxruntime as ort

    from llmneo.inference.onnx_backend import session_options

    options = session_options(threads)
    options.enable_profiling = True
    options.profile_file_prefix = os.path.join(tempfile.mkdtemp(), "ort")
    meta = json.loads((folder / "llmneo_model.json").read_text())
    session = ort.InferenceSession(str(folder / meta["onnx_file"]), options, providers=["CPUExecutionProvider"])
    names = [node.name for node in session.get_inputs()]
    for batch in batches[:1] + batches:  # the first run is a warm-up, left out of the table
        session.run(None, {name: batch[name].astype(np.int64) for name in names})
    trace = json.loads(Path(session.end_profiling()).read_text())
    runs = sorted(event["ts"] + event["dur"] for event in trace if event.get("name") == "model_run")
    by_op: dict[str, float] = defaultdict(float)
    for event in trace:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time") and event["ts"] > runs[0]:
            by_op[event["args"]["op_name"]] += event["dur"] / 1e3
    total = sum(by_op.values())
    lines = [f"{'op':<28} {'ms':>9} {'share':>7}"]
    lines += [f"{op:<28} {ms:>9.2f} {ms / total:>7.1%}" for op, ms in sorted(by_op.items(), key=lambda kv: -kv[1])[:rows]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="model folder (torch or onnx) or run folder")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads (default: all cores)")
    parser.add_argument("--batches", type=int, default=8, help="batches profiled per batch size")
    parser.add_argument("--rows", type=int, default=12, help="table rows")
    parser.add_argument("--data", type=Path, default=Path(default_data_dir()) / "dev.tsv")
    args = parser.parse_args()
    predictor = Predictor.load(args.model, num_threads=args.threads)
    texts = read_labeled_file(args.data, predictor.labels).texts
    for batch_size in (1, 32):
        batches = _batches(predictor, texts, batch_size, args.batches)
        print(f"\n## {predictor.model_dir} ({predictor.backend_name}), batch {batch_size}, "
              f"{args.batches} batches of ~{batches[0]['input_ids'].shape[1]} tokens, threads {args.threads or 'all'}")
        if predictor.backend_name == "torch":
            print(profile_torch(predictor, batches, args.rows))
        else:
            print(profile_onnx(predictor.model_dir, batches, args.threads, args.rows))


if __name__ == "__main__":
    main()
