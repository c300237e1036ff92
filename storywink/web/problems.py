"""Every refusal of the API as `application/problem+json` (RFC 9457), mapped in one place.

not found 404; not ready / busy / not allowed 409; bad input 422 (413 too large, 415 not a
supported photo); no or bad token 401; Temporal or the database unavailable 503 with
`Retry-After`. Details never hold a secret or a token.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.service import RPCError

from storywink.book.inputs import BookInputError
from storywink.book.refusals import BookBusy, BookError, BookNotFound, BookNotReady, NoSuchPage
from storywink.db.engine import DatabaseNotReady
from storywink.redact import shorten
from storywink.story.records import PageTextBusy, PageTextRefused, StoryNotAllowed
from storywink.temporal.connection import TemporalUnavailable
from storywink.web.auth import NotAuthenticated

log = logging.getLogger(__name__)

PROBLEM_JSON: Final = "application/problem+json"
RETRY_AFTER_SECONDS: Final = 5
DETAIL_LIMIT: Final = 600


class Problem(BaseModel):
    """The body of every error answer."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None


class ApiProblem(Exception):
    """A refusal raised by the web layer itself, with its status and a clear detail."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail


class NotFound(ApiProblem):
    def __init__(self, detail: str) -> None:
        super().__init__(404, "Not Found", detail)


class BadInput(ApiProblem):
    def __init__(self, detail: str) -> None:
        super().__init__(422, "Unprocessable Content", detail)


def problem(
    status: int, title: str, detail: str | None, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    body = Problem(
        title=title, status=status, detail=shorten(detail, DETAIL_LIMIT) if detail else None
    )
    return JSONResponse(
        body.model_dump(), status_code=status, media_type=PROBLEM_JSON, headers=headers
    )


def _unavailable(what: str) -> JSONResponse:
    return problem(
        503,
        "Service Unavailable",
        f"{what} is unavailable right now; try again",
        {"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def install_problem_handlers(app: FastAPI) -> None:
    """Register the one mapping from exceptions to answers."""

    @app.exception_handler(NotAuthenticated)
    async def _not_authenticated(_: Request, exc: NotAuthenticated) -> JSONResponse:
        return problem(401, "Unauthorized", str(exc), {"WWW-Authenticate": "Bearer"})

    @app.exception_handler(ApiProblem)
    async def _api_problem(_: Request, exc: ApiProblem) -> JSONResponse:
        return problem(exc.status, exc.title, exc.detail)

    @app.exception_handler(BookNotFound)
    async def _not_found(_: Request, exc: BookNotFound) -> JSONResponse:
        return problem(404, "Not Found", str(exc))

    @app.exception_handler(NoSuchPage)
    async def _no_such_page(_: Request, exc: NoSuchPage) -> JSONResponse:
        return problem(404, "Not Found", str(exc))

    @app.exception_handler(BookError)
    async def _refused(_: Request, exc: BookError) -> JSONResponse:
        if isinstance(exc, PageTextRefused) and not isinstance(exc, PageTextBusy):
            return problem(422, "Unprocessable Content", str(exc))  # the text itself
        # BookNotReady, BookBusy, StoryNotAllowed, a page edit while a run works: 409.
        refused = isinstance(exc, (BookNotReady, BookBusy, StoryNotAllowed, PageTextBusy))
        status = 409 if refused else 500
        return problem(status, "Conflict" if refused else "Internal Server Error", str(exc))

    @app.exception_handler(BookInputError)
    async def _bad_input(_: Request, exc: BookInputError) -> JSONResponse:
        return problem(422, "Unprocessable Content", str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors()
        ]
        return problem(422, "Unprocessable Content", "; ".join(problems))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(exc.status_code, _title(exc.status_code), str(exc.detail), exc.headers)

    @app.exception_handler(RPCError)
    async def _temporal_refused(_: Request, exc: RPCError) -> JSONResponse:
        log.warning("Temporal call failed: %s %s", exc.status.name, shorten(exc.message, 200))
        return _unavailable("Temporal")

    @app.exception_handler(TemporalUnavailable)
    async def _temporal_down(_: Request, exc: TemporalUnavailable) -> JSONResponse:
        log.warning("%s", exc)
        return _unavailable("Temporal")

    @app.exception_handler(SQLAlchemyError)
    async def _database_error(_: Request, exc: SQLAlchemyError) -> JSONResponse:
        log.warning("database call failed: %s", type(exc).__name__)
        return _unavailable("The database")

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected %s in a web request", type(exc).__name__, exc_info=exc)
        return problem(500, "Internal Server Error", f"unexpected {type(exc).__name__}")

    @app.exception_handler(DatabaseNotReady)
    async def _database_down(_: Request, exc: DatabaseNotReady) -> JSONResponse:
        log.warning("%s", exc)
        return _unavailable("The database")


def _title(status: int) -> str:
    titles = {
        400: "Bad Request",
        401: "Unauthorized",
        404: "Not Found",
        405: "Method Not Allowed",
        409: "Conflict",
        413: "Content Too Large",
        415: "Unsupported Media Type",
        422: "Unprocessable Content",
    }
    return titles.get(status, "Error")
