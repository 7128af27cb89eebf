"""Dependencies shared by the routes, as typed aliases (`ServiceDep`, `SettingsDep`), and the API key.

The service lives on `app.state` (built in the lifespan), so every app in a process has its own and
tests can run several servers side by side. The Bearer scheme is built per app by `api_key_dependencies`
and only when a key is configured, so the OpenAPI document declares authentication exactly when the
server asks for it.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from llmneo.serve.schemas import ErrorResponse
from llmneo.serve.service import ModelService
from llmneo.serve.settings import ServeSettings

__all__ = [
    "RETRY_AFTER_HEADER",
    "RETRY_AFTER_S",
    "ServiceDep",
    "SettingsDep",
    "api_key_dependencies",
    "unavailable",
    "unavailable_response",
]

RETRY_AFTER_S = 1  # a draining or loading server: ask again soon (a new one may be up behind the balancer)
RETRY_AFTER_HEADER = {
    "Retry-After": {"description": "Seconds after which a retry may succeed.", "schema": {"type": "integer"}}
}


def get_settings(request: Request) -> ServeSettings:
    return request.app.state.settings


def unavailable(message: str, retry_after_s: int = RETRY_AFTER_S) -> HTTPException:
    """503 with Retry-After: the client may come back, and when."""
    return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, message, headers={"Retry-After": str(retry_after_s)})


def unavailable_response(what: str) -> dict[str, Any]:
    """The OpenAPI entry of a 503 answered with Retry-After."""
    return {"model": ErrorResponse, "description": what, "headers": RETRY_AFTER_HEADER}


def get_service(request: Request) -> ModelService:
    service: ModelService | None = getattr(request.app.state, "service", None)
    if service is None or not service.ready:
        raise unavailable("the model is not loaded or the server is draining")
    return service


SettingsDep = Annotated[ServeSettings, Depends(get_settings)]
ServiceDep = Annotated[ModelService, Depends(get_service)]


def api_key_dependencies(settings: ServeSettings) -> list[Any]:
    """[Depends(check)] when LLMNEO_API_KEY is set (401 unless the Bearer token matches, compared in
    constant time), else none: no key, no security scheme in the OpenAPI document."""
    if settings.api_key is None:
        return []
    expected = settings.api_key.get_secret_value().encode()
    bearer = HTTPBearer(auto_error=False, description="The server's LLMNEO_API_KEY.")

    # A default, not Annotated[...]: with postponed annotations FastAPI could not see the local `bearer`.
    def require_api_key(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:  # noqa: B008
        if credentials is None or not hmac.compare_digest(credentials.credentials.encode(), expected):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "missing or wrong API key: send the header 'Authorization: Bearer <key>'",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return [Depends(require_api_key)]
