"""The route of a book's live events (Server-Sent Events)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Final

from fastapi import APIRouter, Header, Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from storywink.db.engine import in_session
from storywink.web.auth import ViewingParent
from storywink.web.book_queries import check_owner
from storywink.web.events import Delivered, book_events
from storywink.web.routes_books import BookId, ServicesDep, problems
from storywink.web.views import root_of

router = APIRouter(tags=["events"])
PING_SECONDS: Final = 15


@router.get(
    "/books/{book_id}/events",
    response_class=EventSourceResponse,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "`progress` events, a `page` event for each page drawn (its id "
            "resumes the stream as Last-Event-ID), then `outcome`; the stream then ends.",
        },
        **problems(404, 422, 503),
    },
    summary="Follow the book live",
)
async def book_event_stream(
    request: Request,
    book_id: BookId,
    parent: ViewingParent,
    app: ServicesDep,
    last_event_id: Annotated[str | None, Header(max_length=2000)] = None,
) -> EventSourceResponse:
    await in_session(app.database.sessions, check_owner, book_id, parent.user_id)
    resume = Delivered.parse(last_event_id)
    root = root_of(request)

    async def stream() -> AsyncIterator[ServerSentEvent]:
        async with app.watchers.watch(book_id) as watcher:
            async for event in book_events(watcher, resume, root):
                yield event

    return EventSourceResponse(stream(), ping=PING_SECONDS, headers={"Cache-Control": "no-store"})
