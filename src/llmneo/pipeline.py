"""The recipe: teacher -> augment -> cache -> distill -> evaluate, each stage writing to `outputs/<name>/`.

Each stage is what one CLI command runs; `run_pipeline` chains them under one parent MLflow run. Stages
talk only through the run folder and the cache (docs/CONTRACTS.md), so any of them can be re-run alone.
"""

from __future__ import annotations

import time
from contextlib import nullcontext

from llmneo.cache.stage import run_cache_stage
from llmneo.config import Config
from llmneo.distill.stage import run_distill_stage
from llmneo.evaluate.stage import run_evaluate_stage
from llmneo.teacher.tune import run_teacher_stage
from llmneo.tracking import tracker as tracking
from llmneo.tracking.runlog import log_stage_outputs
from llmneo.training.distributed import is_main_process
from llmneo.training.stage import write_json
from llmneo.transfer.stage import run_augment_stage

__all__ = ["run_pipeline"]


def run_pipeline(config: Config, resume: bool = False, force: bool = False) -> dict[str, dict] | None:
    """Every stage under one parent run; under a distributed launch rank 0 alone evaluates and logs."""
    started = time.perf_counter()
    parent = tracking.pipeline_run(config, resume) if is_main_process() else nullcontext(tracking.NullTracker())
    with parent as tracker:
        run_teacher_stage(config, resume, force)
        run_augment_stage(config)
        run_cache_stage(config)
        run_distill_stage(config, resume, force=force)
        if not is_main_process():
            return None
        summary = run_evaluate_stage(config)
        summary["wall_seconds"] = time.perf_counter() - started
        write_json(config.run_dir / "summary.json", summary)
        tracker.log_metrics({"wall_seconds": summary["wall_seconds"]})
        log_stage_outputs(tracker, config.run_dir)
    print(f"[run] pipeline finished in {summary['wall_seconds']:.0f} s")
    return summary
