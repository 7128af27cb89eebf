"""Which process am I: the few facts a stage needs to run unchanged under `accelerate launch` or `torchrun`.

The launchers set RANK and WORLD_SIZE (and MASTER_ADDR/PORT); a single process has neither and
never touches torch.distributed. Only rank 0 writes outputs and talks to MLflow; the others compute
and wait. Trainer joins the same process group later (accelerate reuses an initialised group).
"""

from __future__ import annotations

import os

__all__ = ["barrier", "is_main_process", "rank_and_world"]


def rank_and_world() -> tuple[int, int]:
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    return rank_and_world()[0] == 0


def barrier() -> None:
    """Wait for every rank (gloo on CPU, NCCL on GPU); a no-op in a single process."""
    if rank_and_world()[1] == 1:
        return
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    dist.barrier()
