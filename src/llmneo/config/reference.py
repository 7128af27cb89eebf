"""docs/reference/config.md, generated from the config models' field descriptions.

    python -m llmneo.config.reference docs/reference/config.md

A test regenerates the page and compares it with the committed file, so the reference never
drifts from the code.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from llmneo.config.schema import DATA_DIR_ENV, Config, default_data_dir

__all__ = ["iter_fields", "render_reference"]

_HEADER = """# Config reference

Generated from `src/llmneo/config/schema.py` by `python -m llmneo.config.reference docs/reference/config.md`;
do not edit by hand. Every key is validated (unknown keys are errors) and read by the code: see
`tests/config/test_config_fields.py`. Override any key with `--set key.sub=value`.
"""


def _section_model(annotation: Any) -> type[BaseModel] | None:
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def iter_fields(model: type[BaseModel] = Config, prefix: str = ""):
    """(dotted key, section model, field name, FieldInfo) for every leaf field, depth first."""
    for name, info in model.model_fields.items():
        section = _section_model(info.annotation)
        if section is not None:
            yield from iter_fields(section, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", model, name, info


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if isinstance(annotation, type) else None
    text = text or str(annotation).replace("typing.", "")
    return text.replace("|", "\\|")


def _default(info: Any) -> str:
    if info.default_factory is default_data_dir:  # depends on the environment: say how
        return f"`${DATA_DIR_ENV}`, else `'../shared/data/sst2'`"
    if info.default is not PydanticUndefined:
        return f"`{info.default!r}`"
    if info.default_factory is not None:
        value = info.default_factory()
        return f"`{value!r}`" if not isinstance(value, BaseModel) else "(section)"
    return "**required**"


def render_reference() -> str:
    lines = [_HEADER]
    section = None
    for key, _model, _name, info in iter_fields():
        head = key.rsplit(".", 1)[0] if "." in key else "(top level)"
        if head != section:
            section = head
            lines += ["", f"## `{head}`" if head != "(top level)" else "## top level", "",
                      "| key | type | default | what it does |", "| --- | --- | --- | --- |"]
        description = (info.description or "").replace("\n", " ").replace("|", "\\|")
        lines.append(f"| `{key}` | {_type_name(info.annotation)} | {_default(info)} | {description} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/reference/config.md")
    target.write_text(render_reference())
    print(f"wrote {target}")
