"""Does a saved recipe (a config section recorded beside a stage's output) still describe this config?

A stage's output is reused while its recipe is unchanged. Comparing the dumped dicts for equality
would make every new config field, added later with a default, retrain every saved teacher: a field
the saved recipe lacks matches when the config holds that field's default, which is what the
older code behaved as.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from llmneo.config.loading import flatten

__all__ = ["field_defaults", "recipe_matches"]


def field_defaults(model: type[BaseModel], prefix: str = "") -> dict[str, Any]:
    """Dotted field name -> default (JSON form) for every field of `model` that has one, nested ones too."""
    defaults: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            defaults.update(field_defaults(annotation, f"{prefix}{name}."))
        elif not info.is_required():
            default = info.get_default(call_default_factory=True)
            defaults[f"{prefix}{name}"] = default.model_dump(mode="json") if isinstance(default, BaseModel) else default
    return defaults


def recipe_matches(saved: dict[str, Any], current: dict[str, Any], defaults: dict[str, Any]) -> bool:
    """True when every field of `current` equals the saved one, or, missing from `saved`, its default.

    A field in `saved` that the config no longer has is a mismatch: its meaning is unknown now.
    """
    saved_flat, current_flat = flatten(saved), flatten(current)
    if set(saved_flat) - set(current_flat):
        return False
    for key, value in current_flat.items():
        if key in saved_flat:
            if saved_flat[key] != value:
                return False
        elif key not in defaults or defaults[key] != value:
            return False
    return True
