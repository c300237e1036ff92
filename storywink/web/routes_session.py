"""The live page's session: its token in an HttpOnly cookie, so `EventSource` and
`<img>` (which cannot send headers) are authorised without a token in any URL."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from storywink.web.auth import SESSION_COOKIE, CurrentParent, TokenVerifier
from storywink.web.routes_books import problems

router = APIRouter(tags=["session"])


class SessionView(BaseModel):
    user_id: str


@router.post(
    "/session",
    response_model=SessionView,
    responses=problems(),
    summary="Keep the bearer token in this browser's session cookie (the live page)",
)
async def open_session(request: Request, response: Response, parent: CurrentParent) -> SessionView:
    token = request.headers["authorization"].split(" ", 1)[1].strip()
    verifier = request.app.state.storywink.verifier
    assert isinstance(verifier, TokenVerifier)
    _, expires = verifier.verified(token)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=max(0, expires - int(time.time())),
        path=(request.scope.get("root_path") or "") + "/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return SessionView(user_id=parent.user_id)


@router.delete("/session", status_code=204, summary="Forget the session cookie")
async def close_session(request: Request) -> Response:
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path=(request.scope.get("root_path") or "") + "/")
    return response
