"""ASGI middleware: counting and timing every request for Prometheus, and the body size limit.

Plain ASGI (not BaseHTTPMiddleware) so they see every request, including the ones FastAPI answers
with an error before a route runs, and add no task switching to the hot path. The body limit is ours
rather than Starlette's, whose 413 is plain text: here it is the JSON every other error is.
"""

from __future__ import annotations

import time

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmneo.serve.errors import error_body
from llmneo.serve.metrics import ServeMetrics

__all__ = ["BodyLimitMiddleware", "MetricsMiddleware"]


class BodyLimitMiddleware:
    """413, in the API's JSON error shape, for a body over `max_bytes`: at once when Content-Length says so,
    else as soon as the bytes received pass the limit (the route's body parsing then stops)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _message(self) -> str:
        return f"the body is over the limit of {self.max_bytes:,} bytes (LLMNEO_MAX_BODY_BYTES)"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await JSONResponse(error_body(413, self._message()), status_code=413)(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise HTTPException(413, self._message())
            return message

        await self.app(scope, counted, send)


class MetricsMiddleware:
    """Count requests by route template and status, and time them."""

    def __init__(self, app: ASGIApp, metrics: ServeMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def send_and_record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record_status)
        except HTTPException as error:  # e.g. the body limit's 413, answered by an outer middleware
            status = error.status_code
            raise
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"  # templates keep label counts bounded
            self.metrics.observe_request(route, scope["method"], status, time.perf_counter() - started)
