"""The ablation over seeds: each arm's accuracy at the cap beside its best, and the gap per seed and on average,
worked by hand on ablation.json files written here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import PROJECT_ROOT
from llmneo.experiments.ablation import ArmResult, ablation_table, read_ablation
from llmneo.experiments.seeds import seed_table


def _arm(name: str, best: float, evaluations: list[tuple[int, float]]) -> dict:
    history = [{"step": step, "eval_accuracy": accuracy} for step, accuracy in evaluations]
    metrics = {"accuracy": best, "f1_macro": best, "roc_auc": 0.9, "agreement": 0.9, "calibration": {"ece_before": 0.05}}
    return {"arm": name, "overrides": [], "metrics": metrics, "history": history,
            "steps": evaluations[-1][0], "minutes": 20.0}


def _run(root: Path, name: str, seed: int, arms: list[dict]) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "ablation.json").write_text(json.dumps(arms))
    (folder / "config.yaml").write_text(yaml.safe_dump({"student": {"train": {"seed": seed}}}))
    return folder


def test_the_accuracy_at_the_cap_is_the_last_evaluation_not_the_best():
    arm = ArmResult(**_arm("kd-recipe", 0.91, [(1000, 0.88), (3000, 0.91), (2000, 0.90), (4100, 0.905)]))
    assert arm.accuracy_at_cap == 0.905  # the latest step, whatever the order it was logged in
    table = ablation_table([arm])
    assert "| at the cap |" in table.splitlines()[0] and "| 0.9100 | 0.9050 |" in table


def test_the_seed_table_gives_each_gap_the_mean_and_the_count_ahead(tmp_path):
    first = _run(tmp_path, "a", 42, [_arm("ce-gold", 0.89, [(100, 0.88), (200, 0.885)]),
                                     _arm("kd-recipe", 0.905, [(100, 0.90), (200, 0.90)])])
    second = _run(tmp_path, "b", 7, [_arm("ce-gold", 0.90, [(100, 0.90), (200, 0.895)]),
                                     _arm("kd-recipe", 0.895, [(100, 0.89), (200, 0.89)])])
    table = seed_table({"a": read_ablation(first), "b": read_ablation(second)})
    rows = table.splitlines()
    assert rows[2] == "| a | 0.8900 | 0.9050 | +1.50 | 0.8850 | 0.9000 | +1.50 |"
    assert rows[3] == "| b | 0.9000 | 0.8950 | -0.50 | 0.8950 | 0.8900 | -0.50 |"
    assert rows[4] == "| **mean of 2** | | | **+0.50** | | | **+0.50** |"
    assert rows[5] == "| ahead on | | | 1 of 2 | | | 1 of 2 |"


def test_a_missing_arm_or_ablation_is_named(tmp_path):
    only_ce = _run(tmp_path, "c", 1, [_arm("ce-gold", 0.89, [(100, 0.89)])])
    with pytest.raises(ValueError, match="c: no arm 'kd-recipe' in its ablation \\(it has ce-gold\\)"):
        seed_table({"c": read_ablation(only_ce)})
    with pytest.raises(FileNotFoundError, match="no ablation here"):
        read_ablation(tmp_path / "nowhere")


def test_the_script_labels_each_run_by_its_seed_and_writes_the_table(tmp_path):
    folder = _run(tmp_path, "best-cpu-seed9", 9, [_arm("ce-gold", 0.89, [(100, 0.89)]),
                                                  _arm("kd-recipe", 0.90, [(100, 0.90)])])
    out = tmp_path / "seeds.md"
    done = subprocess.run([sys.executable, str(PROJECT_ROOT / "benchmarks" / "ablation_seeds.py"), str(folder),
                           "--out", str(out)], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "| seed 9 (`best-cpu-seed9`) | 0.8900 | 0.9000 | +1.00 |" in out.read_text()
    assert out.read_text() in done.stdout
