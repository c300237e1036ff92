"""Routes on a book's runs: write its story, start or cancel its illustration, redraw a
page. Every start lands on the book's one run of its kind (double clicks, web replicas,
the CLI)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from storywink.db.engine import in_session
from storywink.web.auth import CurrentParent
from storywink.web.book_queries import check_owner
from storywink.web.problems import ApiProblem
from storywink.web.routes_books import BookId, PageNumber, ServicesDep, problems
from storywink.web.schemas import CancelView, RedrawAsk, RunView

router = APIRouter(tags=["runs"])


@router.post(
    "/books/{book_id}/story",
    status_code=202,
    response_model=RunView,
    responses=problems(404, 409, 422, 503),
    summary="Have the text model write the book's story",
)
async def start_story(book_id: BookId, parent: CurrentParent, app: ServicesDep) -> RunView:
    await in_session(app.database.sessions, check_owner, book_id, parent.user_id)
    run = await app.stories.start_story(book_id)
    return RunView(book_id=book_id, workflow_id=run.workflow_id, run_id=run.run_id)


@router.post(
    "/books/{book_id}/illustration",
    status_code=202,
    response_model=RunView,
    responses=problems(404, 409, 422, 503),
    summary="Start the book's illustration, or join the run already working on it",
)
async def start_illustration(
    book_id: BookId,
    parent: CurrentParent,
    app: ServicesDep,
    priority: Annotated[int | None, Query(ge=1, le=5)] = None,
) -> RunView:
    await in_session(app.database.sessions, check_owner, book_id, parent.user_id)
    run = await app.illustrations.start_illustration(book_id, priority)
    return RunView(book_id=book_id, workflow_id=run.workflow_id, run_id=run.run_id)


@router.delete(
    "/books/{book_id}/illustration",
    status_code=202,
    response_model=CancelView,
    responses=problems(404, 409, 422, 503),
    summary="Cancel the book's illustration (pages in flight stop; the book is settled)",
)
async def cancel_illustration(
    book_id: BookId, parent: CurrentParent, app: ServicesDep
) -> CancelView:
    await in_session(app.database.sessions, check_owner, book_id, parent.user_id)
    if not await app.illustrations.cancel(book_id):
        raise ApiProblem(409, "Conflict", f"no illustration run works on book {book_id}")
    return CancelView(book_id=book_id, cancelled=True)


@router.post(
    "/books/{book_id}/pages/{page_number}/redraw",
    status_code=202,
    response_model=RunView,
    responses=problems(404, 409, 422, 503),
    summary="Draw one page again, with what to change; joins the book's redraw run",
)
async def redraw_page(
    book_id: BookId,
    page_number: PageNumber,
    parent: CurrentParent,
    app: ServicesDep,
    ask: RedrawAsk | None = None,
) -> RunView:
    """No body, or `{}`: draw it again as it is."""
    await in_session(app.database.sessions, check_owner, book_id, parent.user_id)
    run = await app.illustrations.redraw_page(book_id, page_number, ask.note if ask else None)
    return RunView(book_id=book_id, workflow_id=run.workflow_id, run_id=run.run_id)


@router.delete(
    "/books/{book_id}",
    status_code=202,
    response_model=RunView,
    responses=problems(404, 409, 422, 503),
    summary="Erase the book: stop its run, delete its photos, pictures and rows",
)
async def erase_book(book_id: BookId, parent: CurrentParent, app: ServicesDep) -> RunView:
    """The durable erasure run (a second request joins it); once it is done the book is
    unknown (404) on every route."""
    await in_session(app.database.sessions, check_owner, book_id, parent.user_id)
    run = await app.erasures.erase_book(book_id)
    return RunView(book_id=book_id, workflow_id=run.workflow_id, run_id=run.run_id)
