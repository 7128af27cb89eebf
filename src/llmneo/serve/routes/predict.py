"""`POST /predict`: texts in, a label and class probabilities per text out.

The router is built per app because the request model carries that app's limits (texts per request,
characters per text), which FastAPI then enforces and publishes in the OpenAPI schema, and because
the API key (and so the 401 answer) exists only when the app has one. Every status the route can
answer is documented, with its body and headers. (No `from __future__ import annotations` here:
FastAPI must see the per-app model object, not its name.)
"""

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status

from llmneo.serve.batching import BatcherClosed, QueueFull
from llmneo.serve.routes.deps import ServiceDep, api_key_dependencies, unavailable, unavailable_response
from llmneo.serve.schemas import (
    ErrorResponse,
    PredictRequest,
    PredictResponse,
    PredictResult,
    ValidationErrorResponse,
    predict_request_model,
)
from llmneo.serve.settings import ServeSettings

__all__ = ["predict_router"]

_REQUEST_ID = {"X-Request-ID": {"description": "The request's id in the prediction log.", "schema": {"type": "string"}}}


def _responses(with_key: bool) -> dict[int | str, dict[str, Any]]:
    responses: dict[int | str, dict[str, Any]] = {
        200: {"description": "One result per text, in the order sent.", "headers": _REQUEST_ID},
        400: {"model": ValidationErrorResponse, "description": "The body is not valid JSON (`loc` gives the offset)."},
        413: {"model": ErrorResponse, "description": "The body is over the size limit."},
        415: {"model": ErrorResponse, "description": "The body is not sent as JSON (Content-Type: application/json)."},
        422: {"model": ValidationErrorResponse,
              "description": "A field breaks the schema, or calibrate/threshold that this model cannot honour."},
        503: unavailable_response("Overloaded (too many texts queued), loading or draining: retry later."),
    }
    if with_key:
        responses[401] = {"model": ErrorResponse, "description": "The Bearer token is missing or wrong.",
                          "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}}}
    return responses


def require_json(request: Request) -> None:
    """415 for a body not sent as JSON: without this check it is parsed anyway and fails as a puzzling 422."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json" and not content_type.endswith("+json"):
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                            f"send the body as JSON with 'Content-Type: application/json' (got "
                            f"{content_type or 'no Content-Type'})")


def predict_router(settings: ServeSettings) -> APIRouter:
    """The /predict route, validating bodies against `settings`' limits."""
    router = APIRouter(tags=["predict"])
    request_model = predict_request_model(settings.max_texts, settings.max_text_chars)

    @router.post("/predict", response_model=PredictResponse, responses=_responses(settings.api_key is not None),
                 dependencies=[*api_key_dependencies(settings), Depends(require_json)])
    async def predict(
        body: request_model,  # type: ignore[valid-type]
        service: ServiceDep,
        response: Response,
    ) -> PredictResponse:
        """Classify `texts`; `threshold` applies to P(positive) (two-class models only)."""
        _check_options(body, service.labels, service.temperature)
        try:
            outcome = await service.predict(body.texts, body.calibrate, body.threshold)
        except QueueFull as error:
            service.metrics.shed.inc()
            raise unavailable(str(error), error.retry_after_s) from None
        except BatcherClosed as error:
            raise unavailable(str(error)) from None
        response.headers["X-Request-ID"] = outcome.request_id
        return PredictResponse(
            results=[PredictResult(pred=p.pred, label=p.label, probs=p.probs) for p in outcome.predictions],
            model=service.name,
            device=service.predictor.device,
            latency_ms=round(outcome.latency_ms, 3),
        )

    return router


def _check_options(body: PredictRequest, labels: list[str], temperature: float | None) -> None:
    """422 for options the model cannot honour, in the same shape as FastAPI's validation errors."""
    if body.calibrate and temperature is None:
        _refuse("calibrate", "this model has no calibration temperature (its llmneo_model.json 'calibration' "
                "is null); send calibrate=false", body.calibrate)
    if body.threshold is not None and len(labels) != 2:
        _refuse("threshold", f"a threshold applies to P(positive) of a two-class model; this model has "
                f"{len(labels)} classes ({', '.join(labels)}); leave threshold out", body.threshold)


def _refuse(field: str, message: str, value: object) -> None:
    detail = [{"type": "value_error", "loc": ["body", field], "msg": message, "input": value}]
    raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail)
