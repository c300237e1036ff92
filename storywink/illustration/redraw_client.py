"""Start a parent's redraw of a page, and wait for it: what `IllustrationClient` calls.

A redraw joins the book's redraw run while it works (signal-with-start under the book's
one redraw workflow id), so two clicks on one page are one drawing and asks for other
pages are drawn in the same run. Refusals come before anything is started: the book or
page missing, a book not illustrated yet, another run holding the book.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client

from storywink import contract
from storywink.book.claims import BookRun, join_or_start
from storywink.book.records import get_book
from storywink.contract import RedrawAsk, RedrawOutcome, RedrawRequest
from storywink.db.engine import in_session
from storywink.illustration import redraws


def _check_page(session: Session, book_id: str, page_number: int) -> None:
    redraws.page_numbered(get_book(session, book_id), page_number)


async def start_redraw(
    sessions: sessionmaker[Session],
    temporal: Client,
    ask: RedrawAsk,
    book_id: str,
    *,
    task_queue: str,
    memo: Mapping[str, Any] | None = None,
) -> BookRun:
    """Ask the book's redraw run to draw `ask`'s page, starting the run if none works.

    Raises `BookNotFound`, `NoSuchPage`, `RedrawNotReady` (not COMPLETED or PARTIAL) or
    `BookBusy` (an illustration or story run holds the book)."""
    await in_session(sessions, _check_page, book_id, ask.page_number)
    return await join_or_start(
        sessions,
        temporal,
        redraws.REDRAW_RUN,
        book_id,
        RedrawRequest(book_id=book_id),
        task_queue=task_queue,
        result_type=RedrawOutcome,
        memo=memo,
        signal=(contract.REDRAW_SIGNAL, ask),
    )


async def wait_for_redraw(temporal: Client, book_id: str) -> RedrawOutcome:
    """The outcome of the book's latest redraw run (waiting for it while it runs).
    Raises `WorkflowFailureError` when it failed or was cancelled."""
    handle = temporal.get_workflow_handle(
        contract.page_redraw_workflow_id(book_id), result_type=RedrawOutcome
    )
    outcome = await handle.result()
    assert isinstance(outcome, RedrawOutcome)
    return outcome
