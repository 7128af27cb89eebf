"""Dependencies shared by the routes, as typed aliases (`ServiceDep`, `ApiKeyDep`).

The service lives on `app.state` (built in the lifespan), so every app in a process has its own and
tests can run several servers side by side.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from llmneo.serve.service import ModelService
from llmneo.serve.settings import ServeSettings

__all__ = ["ApiKeyDep", "ServiceDep", "SettingsDep"]

_bearer = HTTPBearer(auto_error=False, description="Needed only when the server runs with LLMNEO_API_KEY.")


def get_settings(request: Request) -> ServeSettings:
    return request.app.state.settings


def get_service(request: Request) -> ModelService:
    service: ModelService | None = getattr(request.app.state, "service", None)
    if service is None or not service.ready:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the model is not loaded or the server is draining")
    return service


SettingsDep = Annotated[ServeSettings, Depends(get_settings)]
ServiceDep = Annotated[ModelService, Depends(get_service)]


def require_api_key(
    settings: SettingsDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """401 unless the Bearer token equals LLMNEO_API_KEY (constant-time compare), when one is set."""
    if settings.api_key is None:
        return
    expected = settings.api_key.get_secret_value().encode()
    if credentials is None or not hmac.compare_digest(credentials.credentials.encode(), expected):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing or wrong API key: send the header 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )


ApiKeyDep = Annotated[None, Depends(require_api_key)]
