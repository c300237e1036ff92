"""The live book page: plain HTML and a little JavaScript, no build step."""

from __future__ import annotations

from importlib.resources import files
from typing import Final

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

router = APIRouter(tags=["page"], include_in_schema=False)
STATIC: Final = files("storywink.web") / "static"


@router.get("/", response_class=HTMLResponse)
async def live_page() -> HTMLResponse:
    return HTMLResponse((STATIC / "index.html").read_text(), headers={"Cache-Control": "no-cache"})


@router.get("/static/book.js")
async def live_page_script() -> Response:
    return Response(
        (STATIC / "book.js").read_text(),
        media_type="text/javascript",
        headers={"Cache-Control": "no-cache"},
    )
