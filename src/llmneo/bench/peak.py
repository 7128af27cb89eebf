"""How much this machine can do: the fp32 matmul peak the benchmark's FLOP/s are compared with.

fp32 square matrix products large enough that the kernels run at full speed, best of several, in
torch and in onnxruntime (`llmneo.maths.flops` counts the models' side of the ratio).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

__all__ = ["matmul_peak_gflops"]


def _best_seconds(run: Callable[[], Any], repeats: int) -> float:
    run()  # warm-up: thread pool start, page faults on the output
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def _torch_matmul(size: int, num_threads: int | None) -> Callable[[], Any]:
    import torch

    generator = torch.Generator().manual_seed(0)
    left, right = (torch.randn(size, size, generator=generator) for _ in range(2))
    return lambda: torch.matmul(left, right)


def _onnxruntime_matmul(size: int, num_threads: int | None) -> Callable[[], Any]:
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper

    square = [size, size]
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "matmul",
                              [helper.make_tensor_value_info(name, TensorProto.FLOAT, square) for name in "ab"],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, square)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = ort.SessionOptions()
    if num_threads:
        options.intra_op_num_threads = num_threads
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feed = {name: rng.standard_normal(square, dtype=np.float32) for name in "ab"}
    return lambda: session.run(None, feed)


def matmul_peak_gflops(size: int = 2048, repeats: int = 7, num_threads: int | None = None) -> dict[str, float]:
    """Best fp32 GFLOP/s of `size`x`size` matrix products (2 * size^3 FLOPs each), per library.

    Both libraries the models run on are probed, torch (MKL/oneDNN) and onnxruntime (MLAS): their
    kernels differ a lot on some CPUs (MKL takes slower paths on AMD), and the machine's peak is the
    faster of the two. The best repeat rather than the mean: the peak is what the hardware can do;
    slower repeats measure interference (other processes, frequency changes), not the machine.
    """
    import torch

    flops = 2 * size**3
    previous = torch.get_num_threads()
    if num_threads:
        torch.set_num_threads(num_threads)
    try:
        return {name: flops / _best_seconds(build(size, num_threads), repeats) / 1e9
                for name, build in (("torch", _torch_matmul), ("onnxruntime", _onnxruntime_matmul))}
    finally:
        torch.set_num_threads(previous)
