"""The recipe against its baseline over several seeds: a claim one seed makes, several must keep."""

from __future__ import annotations

from llmneo.experiments.ablation import ArmResult

__all__ = ["seed_table"]


def seed_table(runs: dict[str, list[ArmResult]], baseline: str = "ce-gold", recipe: str = "kd-recipe") -> str:
    """Markdown: `recipe` against `baseline` in each run (one seed each), best checkpoint and at the cap, with
    the mean gap and on how many seeds the recipe led. A claim one seed makes, several must keep."""
    lines = [f"| run | {baseline} | {recipe} | gap | {baseline} at the cap | {recipe} at the cap | gap at the cap |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    gaps, cap_gaps = [], []
    for name, results in runs.items():
        arms = {r.arm: r for r in results}
        missing = [arm for arm in (baseline, recipe) if arm not in arms]
        if missing:
            raise ValueError(f"{name}: no arm {missing[0]!r} in its ablation (it has {', '.join(arms)})")
        base, best = arms[baseline], arms[recipe]
        gaps.append(best.metrics["accuracy"] - base.metrics["accuracy"])
        cap_gaps.append(best.accuracy_at_cap - base.accuracy_at_cap)
        lines.append(f"| {name} | {base.metrics['accuracy']:.4f} | {best.metrics['accuracy']:.4f} | "
                     f"{100 * gaps[-1]:+.2f} | {base.accuracy_at_cap:.4f} | {best.accuracy_at_cap:.4f} | "
                     f"{100 * cap_gaps[-1]:+.2f} |")
    lines.append(f"| **mean of {len(gaps)}** | | | **{100 * sum(gaps) / len(gaps):+.2f}** | | | "
                 f"**{100 * sum(cap_gaps) / len(cap_gaps):+.2f}** |")
    lines.append(f"| ahead on | | | {sum(g > 0 for g in gaps)} of {len(gaps)} | | | "
                 f"{sum(g > 0 for g in cap_gaps)} of {len(cap_gaps)} |")
    return "\n".join(lines) + "\n"
