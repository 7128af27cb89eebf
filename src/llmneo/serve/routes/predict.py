"""`POST /predict`: texts in, a label and class probabilities per text out.

The router is built per app because the request model carries that app's limits (texts per request,
characters per text), which FastAPI then enforces and publishes in the OpenAPI schema. (No
`from __future__ import annotations` here: FastAPI must see the per-app model object, not its name.)
"""

from fastapi import APIRouter, HTTPException, Response, status

from llmneo.serve.batching import BatcherClosed
from llmneo.serve.routes.deps import ApiKeyDep, ServiceDep
from llmneo.serve.schemas import PredictRequest, PredictResponse, PredictResult, predict_request_model
from llmneo.serve.settings import ServeSettings

__all__ = ["predict_router"]

_ERRORS = {
    401: {"description": "LLMNEO_API_KEY is set and the Bearer token is missing or wrong."},
    413: {"description": "The body is over the size limit."},
    422: {"description": "Invalid body, or calibrate/threshold that this model cannot honour."},
    503: {"description": "The server is draining."},
}


def predict_router(settings: ServeSettings) -> APIRouter:
    """The /predict route, validating bodies against `settings`' limits."""
    router = APIRouter(tags=["predict"])
    request_model = predict_request_model(settings.max_texts, settings.max_text_chars)

    @router.post("/predict", response_model=PredictResponse, responses=_ERRORS)
    async def predict(
        body: request_model,  # type: ignore[valid-type]
        service: ServiceDep,
        _: ApiKeyDep,
        response: Response,
    ) -> PredictResponse:
        """Classify `texts`; `threshold` applies to P(positive) (two-class models only)."""
        _check_options(body, service.labels, service.temperature)
        try:
            outcome = await service.predict(body.texts, body.calibrate, body.threshold)
        except BatcherClosed as error:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(error)) from None
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
