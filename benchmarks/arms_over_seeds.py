"""Every arm of an ablation over seeds, accuracy and macro-F1 side by side: one `llmneo compare` run folder
per seed, tabulated together with the run's own teacher and its wall time.

    python benchmarks/arms_over_seeds.py outputs/sst5 outputs/sst5-seed2 --out benchmarks/sst5-arms.md

Where `ablation_seeds.py` puts the two headline arms against each other, this keeps all of them: on a task
with many classes the macro-F1 can rank arms differently from accuracy (a rare class counts as much as a
common one), and the table shows both. Each folder's seed comes from its `config.yaml`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from statistics import mean

from ablation_seeds import seed_of

from llmneo.atomic import write_text_atomic
from llmneo.experiments.ablation import read_ablation


def arms_table(runs: list[Path]) -> str:
    """Markdown: one row per arm, accuracy and macro-F1 per seed and their means, with steps and minutes."""
    results = {run: {r.arm: r for r in read_ablation(run)} for run in runs}
    arms = list(next(iter(results.values())))
    seeds = [seed_of(run) for run in runs]
    header = ["arm", *[f"acc seed {s}" for s in seeds], "acc mean", *[f"macro-F1 seed {s}" for s in seeds],
              "macro-F1 mean", "steps", "CPU-minutes"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for arm in arms:
        rows = [results[run][arm] for run in runs]
        accuracy = [r.metrics["accuracy"] for r in rows]
        f1 = [r.metrics["f1_macro"] for r in rows]
        cells = [arm, *[f"{a:.4f}" for a in accuracy], f"**{mean(accuracy):.4f}**", *[f"{f:.4f}" for f in f1],
                 f"**{mean(f1):.4f}**", "/".join(str(r.steps) for r in rows), f"{mean(r.minutes for r in rows):.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_lines(run_dir: Path) -> str:
    """The run itself: teacher and student on dev, and how long `llmneo run` took."""
    summary = json.loads((run_dir / "summary.json").read_text())
    teacher, student = summary["teacher"], summary["student"]
    return (f"`llmneo run`: teacher {teacher['accuracy']:.4f} accuracy ({teacher['f1_macro']:.4f} macro-F1), "
            f"student {student['accuracy']:.4f} ({student['f1_macro']:.4f}), {summary['speedup']:.1f}x faster; "
            f"{summary['wall_seconds'] / 60:.1f} minutes of wall time.\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path, nargs="+", help="run folders, each holding an ablation.json")
    parser.add_argument("--out", type=Path, help="also write the table here")
    args = parser.parse_args()
    text = run_lines(args.runs[0]) + "\n" + arms_table(args.runs)
    print(text)
    if args.out:
        write_text_atomic(args.out, text)


if __name__ == "__main__":
    main()
