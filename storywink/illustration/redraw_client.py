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
from temporalio.common import WorkflowIDReusePolicy

from storywink import contract
from storywink.book.claims import BookRun, describe_claim
from storywink.book.records import Claim, get_book
from storywink.book.refusals import refuse_while_erased
from storywink.contract import RedrawAsk, RedrawOutcome, RedrawRequest
from storywink.db.engine import in_session
from storywink.illustration import redraws


def _check_page(session: Session, book_id: str, page_number: int) -> Claim:
    book = get_book(session, book_id)
    redraws.page_numbered(book, page_number)
    return Claim(book.status, book.claim_workflow_id, book.claim_run_id)


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
    held = await in_session(sessions, _check_page, book_id, ask.page_number)
    refuse_while_erased(book_id, held.status, held.workflow_id)
    kind = redraws.REDRAW_RUN
    own_id = contract.page_redraw_workflow_id(book_id)
    if held.status is kind.holding and held.workflow_id and held.workflow_id != own_id:
        holder = await describe_claim(temporal, held.workflow_id, held.run_id or "")
        if holder.running:
            raise kind.busy(book_id, held.workflow_id)
        # Its run ended without settling the book: the redraw takes the claim over.
    elif held.status is not kind.holding and held.status not in kind.start_from:
        raise kind.not_ready(book_id, held.status)
    handle = await temporal.start_workflow(
        contract.PAGE_REDRAW_WORKFLOW,
        RedrawRequest(book_id=book_id),
        id=own_id,
        task_queue=task_queue,
        result_type=RedrawOutcome,
        start_signal=contract.REDRAW_SIGNAL,
        start_signal_args=[ask],
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        memo=memo,
    )
    return BookRun(book_id, handle.id, handle.result_run_id)


async def wait_for_redraw(temporal: Client, book_id: str) -> RedrawOutcome:
    """The outcome of the book's latest redraw run (waiting for it while it runs).
    Raises `WorkflowFailureError` when it failed or was cancelled."""
    handle = temporal.get_workflow_handle(
        contract.page_redraw_workflow_id(book_id), result_type=RedrawOutcome
    )
    outcome = await handle.result()
    assert isinstance(outcome, RedrawOutcome)
    return outcome
