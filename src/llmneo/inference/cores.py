"""How many CPU threads this process may use: one answer for the server's workers and the ablation's arms."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["available_cores"]


def available_cores() -> int:
    """CPUs this process may run on: its affinity mask, capped by a cgroup v2 quota (a container's --cpus)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
    except (OSError, ValueError):
        return cores
    return cores if quota == "max" else max(1, min(cores, int(quota) // int(period)))
