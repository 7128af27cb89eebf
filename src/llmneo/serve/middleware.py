"""ASGI middleware counting and timing every request for Prometheus.

Plain ASGI (not BaseHTTPMiddleware) so it sees every request, including the ones FastAPI answers
with an error before a route runs, and adds no task switching to the hot path. The body size limit
is FastAPI's own (`FastAPI(max_body_size=...)`), which raises its 413 through this middleware.
"""

from __future__ import annotations

import time

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmneo.serve.metrics import ServeMetrics

__all__ = ["MetricsMiddleware"]


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
