"""The written layout cannot drift from the tree: docs/CONTRACTS.md's layer drawing and the README's layout
section name every package and every module in it, as test_config_fields.py does for config keys."""

from __future__ import annotations

import re

import pytest

from conftest import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "src" / "llmneo"


def tree() -> dict[str, list[str]]:
    """Package (or top-level module) -> the module names inside it (subpackages count as modules)."""
    found: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.iterdir()):
        if path.is_dir() and (path / "__init__.py").is_file():
            found[path.name] = sorted(p.stem for p in path.iterdir()
                                      if (p.suffix == ".py" and p.stem not in ("__init__", "__main__"))
                                      or (p.is_dir() and (p / "__init__.py").is_file()))
        elif path.suffix == ".py" and path.stem != "__init__":
            found[path.stem] = []
    return found


def drawing(text: str, opening: str) -> dict[str, str]:
    """The code block that starts at `opening`: each entry's first word -> its text (continuation lines
    included, as the drawings wrap long entries)."""
    block = text[text.index(opening):]
    block = block[:block.index("```", 3)]
    lines = [line for line in block.splitlines()[1:] if line.strip()]
    if opening.endswith("src/llmneo/"):
        lines = lines[1:]  # past the root line, and up to the first line outside it (tests/)
        lines = lines[:next((i for i, line in enumerate(lines) if not line.startswith(" ")), len(lines))]
    indent = min(len(line) - len(line.lstrip()) for line in lines)
    entries: dict[str, str] = {}
    current: list[str] = []
    for line in lines:
        if len(line) - len(line.lstrip()) == indent:
            head = re.split(r"\s{2,}", line.strip(), maxsplit=1)[0]  # "pipeline | bench", "cli", "atomic.py"
            current = [re.split(r"[/.]", name.strip())[0] for name in head.split("|")]
            for name in current:
                entries[name] = line
        else:
            for name in current:
                entries[name] += " " + line.strip()
    return entries


def missing(entries: dict[str, str]) -> list[str]:
    problems = []
    for package, modules in tree().items():
        if package not in entries:
            problems.append(f"{package}: not in the drawing")
            continue
        words = set(re.findall(r"[A-Za-z_]+", entries[package]))
        problems += [f"{package}.{module}: not named" for module in modules if module not in words]
    return problems


def test_contracts_draw_every_package_and_module():
    text = (PROJECT_ROOT / "docs" / "CONTRACTS.md").read_text()
    assert missing(drawing(text, "```\ncli")) == []


def test_the_readme_layout_names_every_package_and_module():
    text = (PROJECT_ROOT / "README.md").read_text()
    assert missing(drawing(text, "```\nsrc/llmneo/")) == []


def test_the_check_bites_on_a_module_left_out(tmp_path):
    entries = drawing((PROJECT_ROOT / "docs" / "CONTRACTS.md").read_text(), "```\ncli")
    entries["losses"] = entries["losses"].replace("reverse_kl", "")
    assert "losses.reverse_kl: not named" in missing(entries)
    with pytest.raises(KeyError):
        entries.pop("no-such-package")
