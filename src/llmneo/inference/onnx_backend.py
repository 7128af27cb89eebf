"""ONNX Runtime backend: the exported graph `input_ids, attention_mask -> logits` on the CPU.

`llmneo export` gives classifiers and verbalizers one signature, so this backend never asks
which kind it runs. The tokenizer may hand over more arrays than the graph takes (BERT's
`token_type_ids`, all zeros for single sentences); only the graph's own inputs are fed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from llmneo.modelfolder import META_FILE, ONNX_FILE

__all__ = ["OnnxBackend", "session_options"]


def session_options(num_threads: int | None = None, spinning: bool = True) -> ort.SessionOptions:
    """Full graph optimisation (attention, GELU and LayerNorm fusions); `num_threads` intra-op threads.

    One inter-op thread and sequential execution: a transformer's graph is a chain, so parallel
    branches gain nothing and extra pools only compete for the same cores. `spinning=False` makes
    idle pool threads sleep instead of spin-waiting for the next op: on 2 cores shared with other work
    (a server's event loop and clients, a neighbour's job) spinning threads steal the cores the other
    thread of the same pass needs; measured there, a 32-text pass took 78 ms without spinning and 139 ms
    with it (README, Serving).
    """
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    if num_threads:
        options.intra_op_num_threads = num_threads
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


class OnnxBackend:
    name = "onnx"
    device = "cpu"

    def __init__(self, folder: Path, meta: dict[str, Any], num_threads: int | None = None, spinning: bool = True):
        path = Path(folder) / meta.get("onnx_file", ONNX_FILE)
        if not path.is_file():
            raise FileNotFoundError(f"{folder}: {META_FILE} names ONNX file {path.name!r}, which is missing")
        self.path = path
        self.session = ort.InferenceSession(str(path), session_options(num_threads, spinning),
                                            providers=["CPUExecutionProvider"])
        self.input_names = [node.name for node in self.session.get_inputs()]

    def logits(self, encoded: dict[str, np.ndarray]) -> np.ndarray:
        """(B, T) int token arrays -> (B, C) float32 logits."""
        missing = [name for name in self.input_names if name not in encoded]
        if missing:
            raise ValueError(f"{self.path}: the graph needs inputs {missing}, the tokenizer gave {sorted(encoded)}")
        feed = {name: np.ascontiguousarray(encoded[name], dtype=np.int64) for name in self.input_names}
        return self.session.run(None, feed)[0].astype(np.float32, copy=False)
