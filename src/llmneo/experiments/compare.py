"""`llmneo compare`: the ablation after the teacher, transfer set and cache stages; a table and a chart."""

from __future__ import annotations

import re
from typing import Any

from llmneo.atomic import write_text_atomic
from llmneo.cache.stage import run_cache_stage
from llmneo.config import Config
from llmneo.experiments.ablation import ArmResult, ablation_curves, ablation_table, arm_config, run_ablation
from llmneo.reporting.plots import ablation_figure, png_bytes
from llmneo.teacher.tune import run_teacher_stage
from llmneo.tracking.runlog import log_stage_outputs
from llmneo.training.stage import stage_run, write_json
from llmneo.transfer.stage import run_augment_stage

__all__ = ["run_compare"]


def run_compare(config: Config, arms: dict[str, dict[str, Any]], minutes: float, resume: bool = False,
                jobs: int = 1, force: bool = False) -> list[ArmResult]:
    """Every arm trained under the same cap; writes ablation.{md,json,png} in the run folder. Every arm's config
    is checked before the teacher is tuned: a typo in the last arm costs nothing."""
    for arm, overrides in arms.items():
        arm_config(config, arm, overrides, minutes)
    run_teacher_stage(config, resume=True)
    run_augment_stage(config)
    run_cache_stage(config)
    with stage_run(config, "ablation") as tracker:
        results = run_ablation(config, arms, minutes, resume, jobs=jobs, parent_run_id=tracker.run_id, force=force)
        table = ablation_table(results)
        write_text_atomic(config.run_dir / "ablation.md", table)
        write_json(config.run_dir / "ablation.json", [r.__dict__ for r in results])
        (config.run_dir / "ablation.png").write_bytes(png_bytes(ablation_figure(ablation_curves(results))))
        for r in results:
            arm = re.sub(r"[^\w\-. :/]", "_", r.arm)  # MLflow metric names refuse '+' and the like
            tracker.log_metrics({f"{arm}_{k}": r.metrics[k] for k in ("accuracy", "f1_macro", "roc_auc")})
        log_stage_outputs(tracker, config.run_dir)
    print(table)
    return results
