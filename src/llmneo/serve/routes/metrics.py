"""`/metrics` in the Prometheus text format, from the app's own registry."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from llmneo.serve.metrics import CONTENT_TYPE_LATEST

__all__ = ["router"]

router = APIRouter(tags=["status"])


@router.get("/metrics", response_class=Response,
            responses={200: {"description": "Prometheus text format.", "content": {CONTENT_TYPE_LATEST: {}}}})
def metrics(request: Request) -> Response:
    """Request counts by status, latency histograms, batch sizes and model time."""
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
