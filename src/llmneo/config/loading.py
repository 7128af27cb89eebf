"""Reading and writing configs: YAML files, ``--set key.sub=value`` overrides, flattening, saving.

Overrides are applied on the raw dict before validation, so an override is checked exactly like a
value written in the file; an error that an override caused names the flag, not the file, and an
unknown key comes with the nearest known one.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from llmneo.config.schema import Config, ConfigError

__all__ = [
    "apply_overrides",
    "apply_settings",
    "config_keys",
    "flatten",
    "load_config",
    "parse_overrides",
    "read_yaml",
    "save_config",
    "validate_config",
]


def _parse_scalar(raw: str) -> Any:
    """YAML-parse an override value so `--set train.lr=1e-4` gives a float and `x=[0,2]` a list."""
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def parse_overrides(overrides: list[str], flag: str = "--set") -> dict[str, Any]:
    """``key.sub=value`` strings -> {dotted key: parsed value}, in order."""
    parsed: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"{flag} {item!r}: expected key.sub=value")
        dotted, value = item.split("=", 1)
        parsed[dotted.strip()] = _parse_scalar(value)
    return parsed


def apply_settings(raw: dict[str, Any], settings: Mapping[str, Any], flag: str = "--set") -> dict[str, Any]:
    """Set dotted keys to values in a raw config dict (validation comes after)."""
    for dotted, value in settings.items():
        node = raw
        keys = dotted.split(".")
        for key in keys[:-1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{flag} {dotted}={value!r}: {key!r} is not a section")
            node = child
        node[keys[-1]] = value
    return raw


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides to a raw config dict (validation comes after)."""
    return apply_settings(raw, parse_overrides(overrides))


def config_keys(model: type[BaseModel] = Config, prefix: str = "") -> list[str]:
    """Every dotted key of the config tree, sections included: what an unknown key is compared with."""
    keys = []
    for name, info in model.model_fields.items():
        keys.append(f"{prefix}{name}")
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys += config_keys(annotation, f"{prefix}{name}.")
    return keys


def _nearest(dotted: str) -> str:
    match = difflib.get_close_matches(dotted, config_keys(), n=1, cutoff=0.6)
    return f" (did you mean {match[0]}?)" if match else ""


def _format_validation_error(error: ValidationError, source: str, overrides: Mapping[str, Any]) -> str:
    first = error.errors()[0]
    key = ".".join(str(part) for part in first["loc"])
    message = first["msg"].removeprefix("Value error, ")  # pydantic's wrapper of our own ValueErrors
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    elif first["type"] == "missing":
        message = "required key is missing"
    blamed = next((dotted for dotted in overrides if dotted == key or dotted.startswith(f"{key}.")), None)
    hint = _nearest(blamed or key) if first["type"] == "extra_forbidden" else ""
    more = f" (and {len(error.errors()) - 1} more)" if len(error.errors()) > 1 else ""
    if blamed is not None:
        value = overrides[blamed]
        shown = value if isinstance(value, str) else yaml.safe_dump(value, default_flow_style=True).strip()
        flag = f"--set {blamed}={shown.removesuffix('...').strip()}"
        return f"{flag}: {message}{hint}{more}" if blamed == key else f"{flag}: {key}: {message}{hint}{more}"
    return f"{source}: {key}: {message}{hint}{more}" if key else f"{source}: {message}{more}"  # cross-section


def validate_config(raw: dict[str, Any], source: str = "config", overrides: Mapping[str, Any] | None = None) -> Config:
    """Validate a raw dict into a Config, turning pydantic's report into a one-line ConfigError that names
    the key (and the --set flag that set it, when one did)."""
    try:
        return Config.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(_format_validation_error(error, source, overrides or {})) from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from a file; every problem is one line naming the file (and the line where known)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 (byte 0x{data[error.start]:02x}); save the file as UTF-8") from None
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: invalid YAML: {getattr(error, 'problem', error)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return raw


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read a YAML config, apply dotted overrides, validate."""
    raw = read_yaml(path)
    settings = parse_overrides(overrides or [])
    as_typed = {item.split("=", 1)[0].strip(): item.split("=", 1)[1] for item in overrides or []}
    return validate_config(apply_settings(raw, settings), source=str(path), overrides=as_typed)


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested dicts to dotted keys (for MLflow params)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def save_config(config: Config, path: str | Path) -> None:
    """Write the resolved config as YAML (beside every output, so a run can be re-created)."""
    Path(path).write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
