"""The docs cannot drift: the site builds with --strict, the generated references are current, every
`llmneo <command> --flag` and every config key the docs and the README write exists, and their Python
snippets run."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from conftest import PROJECT_ROOT

DOCS = sorted((PROJECT_ROOT / "docs").rglob("*.md")) + [PROJECT_ROOT / "README.md"]
_COMMAND = re.compile(r"\bllmneo[ \t]+((?:--?[\w-]+[ \t]+)*)([a-z][\w-]*)([^\n`|]*)")
_FLAG = re.compile(r"(?<![\w/.-])(--[a-z][\w-]*)")
_MISTAKES = {"student.trian", "student.trian.epochs"}  # the bad-input page shows typos on purpose
_FILE_TYPES = {"csv", "tsv", "yaml", "jsonl", "json", "txt", "parquet", "md", "png"}
_SECTIONS = "name|output_dir|data|teacher|student|loss|cache|augment|tracking|export|serve"
_KEY = re.compile(rf"(?<![\w/.$-])(?:({_SECTIONS})\.[a-z_]+(?:\.[a-z_]+)*)(?![\w/(-]|\.py)")


def code(text: str) -> str:
    """The code a page shows, fenced blocks and inline spans, one per line; a command continued with `\\` is
    joined into one line."""
    blocks = [re.sub(r"(?m)[ \t]+#.*$", "", block)  # a shell comment is prose
              for block in re.findall(r"```[\w-]*\n(.*?)```", text, re.DOTALL)]
    spans = re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.DOTALL))
    return "\n".join(blocks + spans).replace("\\\n", " ")


def written_commands(text: str) -> list[tuple[str, list[str], str]]:
    """(command, its --flags, the text) for each `llmneo COMMAND ...` in code, up to the line's end."""
    found = []
    for match in _COMMAND.finditer(code(text)):
        before, command, rest = match.groups()
        rest = rest.split("#")[0]  # a shell comment after the command is prose
        found.append((command, _FLAG.findall(before) + _FLAG.findall(rest), match.group(0)))
    return found


def unknown_flags(text: str) -> list[str]:
    from llmneo.cli.reference import command_options

    options = command_options()
    problems = []
    for command, flags, written in written_commands(text):
        if command not in options:
            problems.append(f"{written.strip()!r}: no command {command!r}")
            continue
        problems += [f"{written.strip()!r}: {command} has no option {flag}" for flag in flags
                     if flag not in options[command] | options[""]]
    return problems


def unknown_keys(text: str) -> list[str]:
    from llmneo.config import config_keys

    known = set(config_keys())
    # loss.terms.<term>.<option> keys belong to a term (checked when the loss is built), not to the schema
    return sorted({match.group(0) for match in _KEY.finditer(code(text)) if match.group(0) not in known
                   and not match.group(0).startswith("loss.terms.") and match.group(0) not in _MISTAKES
                   and match.group(0).rsplit(".", 1)[-1] not in _FILE_TYPES})


@pytest.mark.parametrize("path", DOCS, ids=[str(p.relative_to(PROJECT_ROOT)) for p in DOCS])
def test_every_written_command_flag_and_config_key_exists(path):
    text = path.read_text()
    if path.name in ("cli.md", "config.md") and path.parent.name == "reference":
        return  # generated from the code itself
    assert unknown_flags(text) == []
    if path.name != "CONTRACTS.md":  # the design page names modules (tracking.store), not config keys
        assert unknown_keys(text) == []


def test_the_drift_checks_bite_on_a_made_up_flag_and_key():
    text = "```bash\nllmneo run --config c.yaml --turbo\nllmneo serve outputs/demo --workers 2\n```\n" \
           "Set `student.train.epochz` or `loss.alpha`; llmneo keeps prose out of it."
    assert unknown_flags(text) == ["'llmneo run --config c.yaml --turbo': run has no option --turbo"]
    assert unknown_keys(text) == ["student.train.epochz"]


def test_the_generated_references_are_current():
    from llmneo.cli.reference import render_cli_reference, render_http_reference

    folder = PROJECT_ROOT / "docs" / "reference"
    hint = "regenerate: python -m llmneo.cli.reference docs/reference"
    assert (folder / "cli.md").read_text() == render_cli_reference(), hint
    assert (folder / "http-api.md").read_text() == render_http_reference(), hint


def test_the_site_builds_strict(tmp_path):
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "site" / "how-to" / "your-data" / "index.html").is_file()


def python_snippets() -> list[tuple[str, str]]:
    snippets = []
    for path in DOCS:
        for number, block in enumerate(re.findall(r"```python\n(.*?)```", path.read_text(), re.DOTALL)):
            snippets.append((f"{path.relative_to(PROJECT_ROOT)}#{number}", block))
    return snippets


@pytest.mark.slow
@pytest.mark.parametrize("where, code", python_snippets(), ids=[where for where, _ in python_snippets()])
def test_the_python_snippets_run(where, code, tracked_run, tmp_path):
    """Each snippet as written, in a folder where `outputs/demo` is a real (tiny) run and `path/to/this/folder`
    its student: what the docs promise a reader, on the session's own run."""
    (tmp_path / "outputs").mkdir()
    (tmp_path / "outputs" / "demo").symlink_to(tracked_run.run_dir)
    (tmp_path / "path" / "to" / "this").mkdir(parents=True)
    (tmp_path / "path" / "to" / "this" / "folder").symlink_to(tracked_run.run_dir / "student")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300, check=False, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, f"{where}:\n{result.stderr[-3000:]}"


def test_there_are_snippets_and_commands_to_check():
    assert len(python_snippets()) >= 2
    assert sum(len(written_commands(path.read_text())) for path in DOCS) > 50
