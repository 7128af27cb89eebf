"""`llmneo bench-serve` end to end on a tiny run folder: the backend alone, a real server under load at
each client count, the backend again, and the report that puts the server next to its backend."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmneo.cli import app
from llmneo.inference.export import export_model

pytestmark = pytest.mark.slow


def test_bench_serve_reports_the_server_as_a_share_of_its_own_backend(tiny_model_dir: Path, sst2_dir: Path,
                                                                      tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_model_dir, run / "student")
    export_model(run, quantize="none", data_path=sst2_dir / "dev.tsv", max_examples=64)
    out = tmp_path / "bench"
    result = CliRunner().invoke(app, ["bench-serve", str(run), "--clients", "1", "--clients", "4",
                                      "--requests", "60", "--single-requests", "20", "--data",
                                      str(sst2_dir / "dev.tsv"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "onnx fp32 backend" in result.output and "of batch 32" in result.output
    report = json.loads((out / "results.json").read_text())
    assert report["model"].endswith("export/onnx-fp32") and report["backend"] == "onnx fp32"
    for side in ("backend_before", "backend_after"):
        assert report[side]["batch32_texts_per_s"] > 0 and report[side]["batch2_p50_ms"] > 0
        assert set(report[side]["by_setting"]) == {"spinning_false", "spinning_true"}
    rows = {row["clients"]: row for row in report["server"]}
    assert set(rows) == {1, 4}
    assert rows[1]["requests"] == 20 and rows[4]["requests"] == 60
    for row in rows.values():
        assert row["errors"] == 0 and row["statuses"] == {"200": row["requests"]}
        assert row["share_of_backend_batch32"] == pytest.approx(row["texts_per_s"] / report["backend_batch32_texts_per_s"])
        assert row["p50_ms"] <= row["p99_ms"]
    assert rows[1]["mean_texts_per_pass"] == pytest.approx(2.0)  # one client: each request is its own pass
    table = (out / "results.md").read_text().splitlines()
    assert table[0].startswith("onnx fp32 backend") and len(table) == 4 + len(rows)
