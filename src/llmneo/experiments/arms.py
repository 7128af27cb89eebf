"""Arms and students as data: YAML files of named overrides, validated like the rest of the config.

An arm (of `llmneo compare`) or a student (of `llmneo sweep`) is the run's config with a few dotted keys
set. The defaults ship as YAML beside this module (`presets/`); a user's own file (`--arms F`,
`--students F`) has the same shape, so trying another arm is a YAML edit, not a code change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from llmneo.config import ConfigError, parse_overrides, read_yaml

__all__ = ["PRESETS", "describe_overrides", "load_arms", "parse_arm"]

PRESETS = Path(__file__).parent / "presets"


def _check_name(name: str) -> str:
    if not name or any(ch in name for ch in "/\\ :") or name in (".", ".."):
        raise ValueError(f"{name!r} is not a plain name (it names a folder: no spaces, slashes or colons)")
    return name


class _ArmsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    arms: dict[str, dict[str, Any]] = Field(..., min_length=1)

    @field_validator("arms")
    @classmethod
    def _names(cls, arms: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for name in arms:
            _check_name(name)
        return arms


class _StudentsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    students: dict[str, dict[str, Any]] = Field(..., min_length=1)

    @field_validator("students")
    @classmethod
    def _names(cls, students: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for name in students:
            _check_name(name)
        if "teacher" in students:
            raise ValueError("'teacher' is reserved for the teacher's points")
        return students


def load_arms(path: str | Path | None, kind: str = "arms") -> dict[str, dict[str, Any]]:
    """{name: {dotted key: value}} from an arms (or students) file; the preset when `path` is None.
    The overrides themselves are checked when each arm's config is built (`arm_config`), before anything trains."""
    path = Path(path) if path is not None else PRESETS / f"{kind}.yaml"
    raw = read_yaml(path)
    schema = _ArmsFile if kind == "arms" else _StudentsFile
    try:
        parsed = schema.model_validate(raw)
    except ValidationError as error:
        errors = sorted(error.errors(), key=lambda item: item["type"] != "extra_forbidden")  # a typo says most
        first = errors[0]
        key = ".".join(str(part) for part in first["loc"])
        message = f"unknown key (expected {kind}:)" if first["type"] == "extra_forbidden" else first["msg"]
        raise ConfigError(f"{path}: {key}: {message}") from None
    return getattr(parsed, kind)


def parse_arm(spec: str, flag: str = "--arm") -> tuple[str, dict[str, Any]]:
    """`NAME: key=value key=value` -> (NAME, {key: value}); the overrides are parsed like --set ones."""
    name, _, rest = spec.partition(":")
    try:
        name = _check_name(name.strip())
    except ValueError as error:
        raise ConfigError(f"{flag} {spec!r}: {error}; expected 'NAME: key=value ...'") from None
    return name, parse_overrides(rest.split(), flag=f"{flag} {name}:")


def describe_overrides(overrides: dict[str, Any]) -> list[str]:
    """`key=value` strings for tables and logs (values in YAML's flow style, as one would type them)."""
    return [f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"
            for key, value in overrides.items()]
