"""Every error answer in one JSON shape: `{"detail": [{"type", "loc", "msg", "input"?}]}`.

FastAPI answers validation errors with a list of items and HTTP errors with a bare string; here both are
the list, so a client reads every error the same way (401, 404, 405, 413, 415 and 503 included).

Two more things FastAPI's defaults get wrong for a text API. Its 422 echoes each offending input whole (a
100 KB text comes back as 100 KB); here `input` quotes at most a short prefix. And some inputs cannot be
written as UTF-8 JSON (a lone surrogate such as "\\ud800", NaN, Infinity): the default handler then fails
with a 500 while reporting a client's mistake; those are written as their (shortened) Python repr.

A body that cannot be parsed at all is a bad request (400), not a well-formed request with invalid
content (422): FastAPI reports both as a validation error, told apart here by the `json_invalid` type.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

__all__ = ["error_body", "http_error_handler", "validation_error_handler"]

QUOTED_CHARS = 80  # of an offending input, quoted back in a 422
_TYPES = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
          413: "body_too_large", 415: "unsupported_media_type", 503: "unavailable"}
_LOCATIONS: dict[int, list[str]] = {401: ["header", "Authorization"], 413: ["body"], 415: ["header", "Content-Type"]}


def _quoted(value: Any) -> Any:
    """`value` as JSON-ready data, shortened: a long text to its first characters and its length."""
    if isinstance(value, str) and len(value) > QUOTED_CHARS:
        return f"{value[:QUOTED_CHARS]}... ({len(value):,} characters)"
    try:
        encoded = jsonable_encoder(value)
        text = json.dumps(encoded, allow_nan=False, ensure_ascii=False)
        text.encode("utf-8")
    except (ValueError, TypeError, UnicodeEncodeError):
        return ascii(value)[:QUOTED_CHARS]
    if len(text) > 2 * QUOTED_CHARS:
        return f"{text[:QUOTED_CHARS]}... ({len(text):,} characters of JSON)"
    return encoded


def error_body(status_code: int, message: str) -> dict[str, Any]:
    """The one error shape, for an answer that is not a validation error."""
    item = {"type": _TYPES.get(status_code, "error"), "loc": _LOCATIONS.get(status_code, []), "msg": message}
    return {"detail": [item]}


async def validation_error_handler(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    detail = [{key: (_quoted(value) if key == "input" else jsonable_encoder(value)) for key, value in item.items()
               if key != "url" and not (key == "ctx" and "error" in value)} for item in error.errors()]
    unparsable = any(item.get("type") == "json_invalid" for item in detail)
    code = status.HTTP_400_BAD_REQUEST if unparsable else status.HTTP_422_UNPROCESSABLE_CONTENT
    return JSONResponse({"detail": detail}, status_code=code)


async def http_error_handler(request: Request, error: Exception) -> Response:
    """Every HTTPException in the one shape: a string detail becomes one item; a list (a route's own 422) is
    kept. A body FastAPI cannot decode (bytes that are not UTF-8) is reported as the 400 it is."""
    assert isinstance(error, HTTPException)
    if isinstance(error.detail, list):
        return JSONResponse({"detail": error.detail}, status_code=error.status_code, headers=error.headers)
    message = str(error.detail)
    if error.status_code == status.HTTP_400_BAD_REQUEST:
        body = {"detail": [{"type": "json_invalid", "loc": ["body"], "msg": f"{message}: send UTF-8 JSON"}]}
    else:
        body = error_body(error.status_code, message)
    return JSONResponse(body, status_code=error.status_code, headers=error.headers)
