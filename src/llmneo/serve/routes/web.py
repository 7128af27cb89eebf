"""`/`: the single-file web page (inline CSS and JS, no CDN: the servers may have no network)."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

__all__ = ["router"]

router = APIRouter(tags=["web"])


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def index() -> HTMLResponse:
    page = resources.files("llmneo.serve").joinpath("static/index.html").read_text(encoding="utf-8")
    return HTMLResponse(page)
