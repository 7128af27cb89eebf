"""The base of every config section: unknown keys refused, values checked again on assignment."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, field_validator

__all__ = ["Strict"]


class Strict(BaseModel):
    """A config section: `extra="forbid"`, so a typo is an error that names the key, never a setting ignored."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @field_validator("mixed_precision", mode="before", check_fields=False)
    @classmethod
    def _no_is_no(cls, value: object) -> object:
        """YAML reads a bare `no` as false: `mixed_precision: no` means "no" all the same."""
        return "no" if value is False else value
