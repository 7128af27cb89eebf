"""Config errors are one line naming the key; overrides are validated like file values."""

import subprocess
import sys

import pytest

from llmneo.config import ConfigError, load_config

BASE = "teacher: {name_or_path: t}\nstudent: {name_or_path: s}\n"


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_defaults_and_overrides(tmp_path):
    config = load_config(write(tmp_path, BASE), ["student.lora.r=4", "loss.temperature=3", "student.keep_layers=[0,2]"])
    assert config.loss.alpha == 0.5 and config.loss.temperature == 3.0
    assert config.student.lora.r == 4 and config.student.keep_layers == [0, 2]
    assert config.data.labels == ["negative", "positive"] and config.teacher.lora.enabled is False


@pytest.mark.parametrize("text, overrides, message", [
    (BASE + "studnet: {}\n", [], "studnet: unknown key"),
    (BASE, ["loss.temperature=hot"], "--set loss.temperature=hot: Input should be a valid number"),
    (BASE, ["loss.alpha=1.5"], "--set loss.alpha=1.5: Input should be less than or equal to 1"),
    (BASE, ["student.lora.rank=4"], "--set student.lora.rank=4: unknown key (did you mean student.lora.r?)"),
    (BASE, ["student.trian.epochs=1"],
     "--set student.trian.epochs=1: student.trian: unknown key (did you mean student.train.epochs?)"),
    (BASE, ["data.labels=[one]"], "--set data.labels=[one]: needs two or more"),
    (BASE + "studnet: {}\n", [], "studnet: unknown key (did you mean student?)"),
    ("teacher: {name_or_path: t}\n", [], "student: required key is missing"),
    (BASE + "teacher: [\n", [], "invalid YAML"),
])
def test_errors_name_the_key(tmp_path, text, overrides, message):
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), overrides)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_cli_prints_one_line_not_a_traceback(tmp_path):
    path = write(tmp_path, BASE)
    result = subprocess.run([sys.executable, "-m", "llmneo.cli", "distill", "--config", str(path),
                             "--set", "loss.alpha=2"], capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["error: --set loss.alpha=2: Input should be less than or equal to 1"]
