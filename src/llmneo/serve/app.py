"""Build the FastAPI app: `create_app(settings)`, and a module-level `app` for uvicorn.

`uvicorn llmneo.serve.app:app` reads its settings (the model from ``LLMNEO_MODEL``) from the
environment when uvicorn looks `app` up, not when this module is imported, so `create_app` can be
imported and used with explicit settings (tests, `llmneo serve`) with no environment at all.

The lifespan loads the model off the event loop and runs one warm-up pass before the first request
is taken (/health turns 200 only then), and on shutdown, after
uvicorn has let in-flight requests finish, drains the batcher, flushes the prediction log and
records the session in MLflow when asked.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi_offline import FastAPIOffline
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from llmneo.inference import Predictor
from llmneo.serve.errors import http_error_handler, validation_error_handler
from llmneo.serve.metrics import ServeMetrics
from llmneo.serve.middleware import BodyLimitMiddleware, MetricsMiddleware
from llmneo.serve.model_source import folder_version
from llmneo.serve.routes import health, metrics, web
from llmneo.serve.routes.predict import predict_router
from llmneo.serve.service import ModelService, describe, load_predictor
from llmneo.serve.settings import ServeSettings

__all__ = ["create_app"]

logger = logging.getLogger("uvicorn.error")  # uvicorn's own logger: its handlers print these lines

_DESCRIPTION = (
    "Sentiment classification with a distilled student model. `/predict` takes up to `max_texts` texts "
    "of at most `max_text_chars` characters each (longer texts are rejected, not cut; texts longer than "
    "the model's token limit are truncated by the tokenizer). A request that finds the model idle runs at "
    "once; requests that arrive while it is busy share its next pass. When too many texts wait, /predict "
    "answers 503 with Retry-After."
)


def create_app(settings: ServeSettings, predictor: Predictor | None = None) -> FastAPI:
    """A ready-to-serve app; `predictor` skips loading when the caller already holds the model."""
    serve_metrics = ServeMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if predictor is None:
            loaded, version = await asyncio.to_thread(load_predictor, settings)
        else:
            loaded, version = predictor, folder_version(predictor.model_dir)
        await asyncio.to_thread(loaded.predict_logits, ["warm-up"])  # the first pass is slow; not a client's
        logger.info(describe(loaded, settings))
        service = ModelService(settings=settings, predictor=loaded, version=version, metrics=serve_metrics)
        service.start()
        app.state.service = service
        try:
            yield
        finally:
            await service.shutdown()

    # FastAPIOffline: /docs and /redoc load Swagger UI and ReDoc from the package, not from a CDN
    app = FastAPIOffline(title="llmneo", version="0.1.0", description=_DESCRIPTION, lifespan=lifespan)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(HTTPException, http_error_handler)
    app.state.settings = settings
    app.state.metrics = serve_metrics
    app.include_router(web.router)
    app.include_router(health.router)
    app.include_router(predict_router(settings))
    app.include_router(metrics.router)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)  # 413 as JSON, counted by metrics
    app.add_middleware(MetricsMiddleware, metrics=serve_metrics)
    return app


def __getattr__(name: str) -> Any:
    """`llmneo.serve.app:app`: build the app from LLMNEO_* variables at the moment uvicorn asks."""
    if name == "app":
        try:
            settings = ServeSettings()  # type: ignore[call-arg]  # the model comes from LLMNEO_MODEL
        except ValidationError as error:
            problems = "; ".join(f"LLMNEO_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in error.errors())
            raise RuntimeError(f"cannot configure the server from the environment: {problems}") from None
        return create_app(settings)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
