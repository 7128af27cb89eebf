"""`llmneo init` on a user's own file (issue 25): a CSV with string labels, quoted fields, a byte-order mark
and unlabelled rows becomes a commented config; that config runs end to end (on tiny models here), and the
student answers with the file's class names, from `llmneo predict` and over HTTP."""

from __future__ import annotations

import csv
import io
import json
import random
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from llmneo.cli import app
from llmneo.serve.launch import free_port, server_process

CLASSES = {"billing": ["charged twice, then again", "refund my card", "the invoice, sadly, is wrong"],
           "bug": ["crash on save\nevery time", "the app freezes", "button does nothing"],
           "praise": ['she said "wow"', "love the new look", "works great, thanks"]}


def write_tickets(path: Path, labelled_per_class: int = 30, unlabelled: int = 40) -> None:
    rng = random.Random(0)
    rows = [(f"{rng.choice(texts)} #{i}", label) for label, texts in CLASSES.items() for i in range(labelled_per_class)]
    rows += [(f"{rng.choice(rng.choice(list(CLASSES.values())))} (no label) #{i}", "") for i in range(unlabelled)]
    rng.shuffle(rows)
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(["ticket_id", "body", "category"])
    writer.writerows((i, text, label) for i, (text, label) in enumerate(rows))
    path.write_bytes(b"\xef\xbb\xbf" + buffer.getvalue().encode("utf-8"))


def test_init_describes_the_file_and_writes_a_commented_config(tmp_path):
    data = tmp_path / "tickets.csv"
    write_tickets(data)
    out = tmp_path / "tickets.yaml"
    result = CliRunner().invoke(app, ["init", str(data), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "detected text column 'body'" in result.output and "label column 'category'" in result.output
    assert "90 labelled rows in 3 classes, 40 unlabelled" in result.output
    text = out.read_text()
    assert "# " in text and "billing 30, bug 30, praise 30" in text
    config = yaml.safe_load(text)
    assert config["data"]["labels"] == ["billing", "bug", "praise"]
    assert config["data"]["text_column"] == "body" and config["data"]["label_column"] == "category"
    assert config["data"]["dev_size"] >= 30 and config["augment"]["max_rows"] == 40
    again = CliRunner().invoke(app, ["init", str(data), "--out", str(out)])
    assert again.exit_code == 2 and "exists" in again.output  # never overwritten unasked


def test_init_refuses_a_file_that_cannot_make_a_classifier_in_one_line(tmp_path):
    data = tmp_path / "one-class.csv"
    data.write_text("text,label\na,spam\nb,spam\nc,\n")
    result = CliRunner().invoke(app, ["init", str(data), "--out", str(tmp_path / "x.yaml")])
    assert result.exit_code == 2 and "one class ('spam')" in result.output
    assert not (tmp_path / "x.yaml").exists()


@pytest.mark.slow
def test_an_init_config_runs_and_the_student_answers_with_the_files_class_names(tmp_path, tiny_bert_source):
    data = tmp_path / "tickets.csv"
    write_tickets(data)
    config = tmp_path / "tickets.yaml"
    assert CliRunner().invoke(app, ["init", str(data), "--out", str(config)]).exit_code == 0
    tiny = [f"teacher.name_or_path={tiny_bert_source}", f"student.name_or_path={tiny_bert_source}",
            "teacher.train.freeze_layers=0", "student.keep_layers=[0,1]", "teacher.max_length=32",
            "student.max_length=32", f"output_dir={tmp_path / 'outputs'}", f"cache.dir={tmp_path / 'cache'}",
            "tracking.enabled=false"]
    run = subprocess.run([sys.executable, "-m", "llmneo.cli", "run", "--config", str(config),
                          *[arg for setting in tiny for arg in ("--set", setting)]],
                         capture_output=True, text=True, timeout=900, cwd=tmp_path, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    run_dir = tmp_path / "outputs" / "tickets"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["final"]["per_class"]) == {"billing", "bug", "praise"}
    transfer = [json.loads(line) for line in (run_dir / "transfer.jsonl").read_text().splitlines()]
    assert len(transfer) == 40 and {row["method"] for row in transfer} == {"unlabelled-row"}  # every empty label
    assert all("(no label)" in row["sentence"] for row in transfer)

    predicted = subprocess.run([sys.executable, "-m", "llmneo.cli", "predict", str(run_dir), "refund my card",
                                "--json"], capture_output=True, text=True, timeout=300, check=False)
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    assert json.loads(predicted.stdout.splitlines()[0])["label"] in CLASSES

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [str(Path(sys.executable).with_name("llmneo")), "serve", str(run_dir), "--port", str(port)]
    with server_process(command, {}, url, tmp_path / "server.log"):
        answer = httpx.post(f"{url}/predict", json={"texts": ["the app freezes", "refund please"]}, timeout=60)
        info = httpx.get(f"{url}/info", timeout=10).json()
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert all(r["label"] == info["labels"][r["pred"]] and len(r["probs"]) == 3 for r in results)
    assert info["labels"] == ["billing", "bug", "praise"]
