"""Validation errors that can always be sent back: 400 for a body that is not JSON, 422 for the rest.

FastAPI echoes each offending input in its 422 body. Some inputs cannot be written as UTF-8 JSON (a
lone surrogate such as "\\ud800", NaN, Infinity), and the default handler then fails with a 500
while reporting a client's mistake. This handler keeps FastAPI's shape (`detail`: a list of
`type`, `loc`, `msg`, `input`, `ctx`) and writes such values as their Python repr instead.

A body that cannot be parsed at all is a bad request (400), not a well-formed request with invalid
content (422): FastAPI reports both as a validation error, told apart here by the `json_invalid` type.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

__all__ = ["http_error_handler", "validation_error_handler"]

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
    unparsable = any(item.get("type") == "json_invalid" for item in detail)
    code = status.HTTP_400_BAD_REQUEST if unparsable else status.HTTP_422_UNPROCESSABLE_CONTENT
    return JSONResponse({"detail": detail}, status_code=code)


async def http_error_handler(request: Request, error: Exception) -> Response:
    """FastAPI's own answer, except its 400 for a body it cannot decode (bytes that are not UTF-8), whose
    plain-string detail becomes the documented 400 shape: a list naming the body."""
    assert isinstance(error, HTTPException)
    if error.status_code == status.HTTP_400_BAD_REQUEST and isinstance(error.detail, str):
        detail = [{"type": "json_invalid", "loc": ["body"], "msg": f"{error.detail}: send UTF-8 JSON"}]
        return JSONResponse({"detail": detail}, status_code=error.status_code, headers=error.headers)
    return await http_exception_handler(request, error)
