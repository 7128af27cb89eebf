"""The `serve` and `export` sections do something: `llmneo serve --config` and `llmneo export --config`
take their settings from them (command-line options win), and docs/reference/config.md is the config's own
description."""

from __future__ import annotations

import json
import shutil

import yaml
from typer.testing import CliRunner

from conftest import PROJECT_ROOT
from llmneo.cli import app
from llmneo.config.reference import render_reference


def _config(tmp_path, **sections) -> str:
    raw = {"name": "sections", "output_dir": str(tmp_path / "outputs"), "teacher": {"name_or_path": "t"},
           "student": {"name_or_path": "s"}, **sections}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def test_serve_takes_the_config_section_and_options_win(tmp_path, monkeypatch):
    started = {}
    monkeypatch.setattr("llmneo.serve.launch.run_server", lambda settings, workers, **_: started.update(s=settings))
    monkeypatch.setenv("LLMNEO_PORT", "7000")  # a key the YAML sets beats the environment...
    monkeypatch.setenv("LLMNEO_HOST", "0.0.0.0")  # ...and one it leaves out comes from it
    config = _config(tmp_path, serve={"port": 9000, "max_texts": 7, "backend": "torch", "log_texts": True})
    result = CliRunner().invoke(app, ["serve", "--config", config, "--max-texts", "5"])
    assert result.exit_code == 0, result.output
    settings = started["s"]
    assert settings.port == 9000 and settings.backend == "torch" and settings.log_texts is True
    assert settings.max_texts == 5  # the option wins over the file
    assert settings.host == "0.0.0.0" and settings.max_batch_size == 32
    assert settings.model == str(tmp_path / "outputs" / "sections")  # the config's run folder


def test_a_bad_serve_key_is_refused_before_serving(tmp_path):
    result = CliRunner().invoke(app, ["serve", "--config", _config(tmp_path, serve={"prot": 9000})])
    assert result.exit_code == 2 and "serve.prot: unknown key" in result.output


def test_export_takes_the_config_section(tmp_path, tiny_model_dir):
    run_dir = tmp_path / "outputs" / "sections"
    shutil.copytree(tiny_model_dir, run_dir / "student")
    config = _config(tmp_path, export={"quantize": "int8", "opset": 14, "min_agreement_int8": 0.5})
    result = CliRunner().invoke(app, ["export", "--config", config, "--max-examples", "16"])
    assert result.exit_code == 0, result.output
    meta = json.loads((run_dir / "export" / "onnx-int8" / "llmneo_model.json").read_text())
    assert meta["quantization"] == "int8" and meta["export"]["opset"] == 14
    assert meta["export"]["min_agreement"] == 0.5
    again = CliRunner().invoke(app, ["export", "--config", config, "--quantize", "none", "--max-examples", "16"])
    assert again.exit_code == 0, again.output  # the option wins: an fp32 export, held to min_agreement_fp32
    meta = json.loads((run_dir / "export" / "onnx-fp32" / "llmneo_model.json").read_text())
    assert meta["quantization"] == "none" and meta["export"]["min_agreement"] == 1.0


def test_the_config_reference_page_is_up_to_date():
    committed = (PROJECT_ROOT / "docs" / "reference" / "config.md").read_text()
    assert committed == render_reference(), "regenerate: python -m llmneo.config.reference docs/reference/config.md"
    result = CliRunner().invoke(app, ["config-reference"])
    assert result.exit_code == 0 and "`serve.port`" in result.stdout
