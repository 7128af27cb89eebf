"""The data layer's error: a bad file or row, phrased as one line with its file (and line)."""

from __future__ import annotations

__all__ = ["DataError"]


class DataError(ValueError):
    """A bad row or file, phrased with its file and line."""
