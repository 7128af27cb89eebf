"""Validation errors that can always be sent back.

FastAPI echoes each offending input in its 422 body. Some inputs cannot be written as UTF-8 JSON (a
lone surrogate such as "\\ud800", NaN, Infinity), and the default handler then fails with a 500
while reporting a client's mistake. This handler keeps FastAPI's shape (`detail`: a list of
`type`, `loc`, `msg`, `input`, `ctx`) and writes such values as their Python repr instead.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

__all__ = ["validation_error_handler"]

_MAX_REPR = 200


def _sendable(value: Any) -> Any:
    """`value` as JSON-ready data, or its (ASCII, shortened) repr when strict UTF-8 JSON cannot hold it."""
    try:
        encoded = jsonable_encoder(value)
        json.dumps(encoded, allow_nan=False, ensure_ascii=False).encode("utf-8")
    except (ValueError, TypeError, UnicodeEncodeError):
        return ascii(value)[:_MAX_REPR]
    return encoded


async def validation_error_handler(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    detail = [{key: _sendable(value) for key, value in item.items()} for item in error.errors()]
    return JSONResponse({"detail": detail}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)
