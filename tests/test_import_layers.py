"""The layers of docs/CONTRACTS.md hold: `lint-imports` keeps every contract in pyproject.toml,
and breaks one when a lower layer imports a higher one (shown on a copy with a bad import added)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import PROJECT_ROOT

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint_imports(project: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(project / "src"), "NO_COLOR": "1"}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=project, env=env, capture_output=True,
                          text=True, timeout=300, check=False)


def test_every_import_contract_is_kept():
    done = _lint_imports(PROJECT_ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_a_wrong_import_breaks_a_contract(tmp_path):
    """maths importing training is a layer violation: lint-imports must fail and name it."""
    shutil.copy(PROJECT_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(PROJECT_ROOT / "src" / "llmneo", tmp_path / "src" / "llmneo",
                    ignore=shutil.ignore_patterns("__pycache__"))
    metrics = tmp_path / "src" / "llmneo" / "maths" / "metrics.py"
    metrics.write_text(metrics.read_text() + "\n\ndef _wrong():\n    import llmneo.training.trainer  # noqa\n")
    done = _lint_imports(tmp_path)
    assert done.returncode != 0, done.stdout
    assert "llmneo.maths.metrics -> llmneo.training.trainer" in done.stdout
    assert "BROKEN" in done.stdout
