"""`/health` (liveness and readiness) and `/info` (what is being served, and the limits)."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from llmneo.serve.routes.deps import RETRY_AFTER_HEADER, RETRY_AFTER_S, ServiceDep, unavailable_response
from llmneo.serve.schemas import HealthResponse, InfoResponse

__all__ = ["router"]

router = APIRouter(tags=["status"])


@router.get(
    "/health",
    response_model=HealthResponse,
    responses={503: {"model": HealthResponse, "description": "Draining or not loaded.",
                      "headers": RETRY_AFTER_HEADER}},
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
    if body.ready:
        return JSONResponse(body.model_dump())
    return JSONResponse(body.model_dump(), status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})


@router.get("/info", response_model=InfoResponse,
            responses={503: unavailable_response("The model is not loaded or the server is draining.")})
def info(service: ServiceDep) -> InfoResponse:
    """Model name, version, provenance, labels, backend, limits, calibration and dev metrics."""
    return InfoResponse.model_validate(service.info())
