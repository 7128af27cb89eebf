"""`/health` (liveness and readiness) and `/info` (what is being served, and the limits)."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from llmneo.serve.routes.deps import ServiceDep
from llmneo.serve.schemas import HealthResponse, InfoResponse

__all__ = ["router"]

router = APIRouter(tags=["status"])


@router.get(
    "/health",
    response_model=HealthResponse,
    responses={503: {"model": HealthResponse, "description": "Draining or not loaded."}},
)
def health(request: Request) -> JSONResponse:
    """200 while the model is loaded and requests are taken, 503 while draining; never needs a key."""
    service = getattr(request.app.state, "service", None)
    if service is None:
        body = HealthResponse(status="loading", ready=False, model="", uptime_s=0.0)
    else:
        body = HealthResponse(
            status="ok" if service.ready else "draining",
            ready=service.ready,
            model=service.name,
            uptime_s=round(time.monotonic() - service.started, 3),
        )
    return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)


@router.get("/info", response_model=InfoResponse)
def info(service: ServiceDep) -> InfoResponse:
    """Model name, version, provenance, labels, backend, limits, calibration and dev metrics."""
    return InfoResponse.model_validate(service.info())
