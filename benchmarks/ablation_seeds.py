"""The ablation's two headline arms over seeds: one `llmneo compare` run folder per seed, tabulated together.

    python benchmarks/ablation_seeds.py outputs/best-cpu outputs/best-cpu-seed2 outputs/best-cpu-seed3 \
        --out benchmarks/best-cpu-seeds.md

Each folder's seed is read from its `config.yaml` (`student.train.seed`). Besides each arm's best dev
checkpoint, the table gives its accuracy at the cap, the weights no dev score chose.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from llmneo.atomic import write_text_atomic
from llmneo.experiments.ablation import read_ablation
from llmneo.experiments.seeds import seed_table


def seed_of(run_dir: Path) -> int:
    """The student seed a run folder was trained with, from its config.yaml."""
    return int(yaml.safe_load((run_dir / "config.yaml").read_text())["student"]["train"]["seed"])


def _label(run_dir: Path) -> str:
    return f"seed {seed_of(run_dir)} (`{run_dir.name}`)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path, nargs="+", help="run folders, each holding an ablation.json")
    parser.add_argument("--baseline", default="ce-gold", help="the arm to beat")
    parser.add_argument("--recipe", default="kd-recipe", help="the arm that should beat it")
    parser.add_argument("--out", type=Path, help="also write the table here")
    args = parser.parse_args()
    table = seed_table({_label(run): read_ablation(run) for run in args.runs}, args.baseline, args.recipe)
    print(table)
    if args.out:
        write_text_atomic(args.out, table)


if __name__ == "__main__":
    main()
