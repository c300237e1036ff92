"""Every database read and write of an erasure run, each idempotent.

The erasure claims the book as every run kind does (`storywink.book.records`), from any
status: a book held by a run that still runs is the caller's to stop first. Once it is
`ERASING` nothing else may claim it, and the rows go last, in one transaction.
"""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from storywink.book.records import Claim, RunKind, holds, take_claim
from storywink.book.refusals import BookBeingErased, BookBusy, BookNotReady
from storywink.contract import BookStatus
from storywink.cost.budgets import book_scope
from storywink.db.models import Book, CostBudget, Notification, Page, PageDraft
from storywink.erasure.contract import (
    BOOK_ERASURE_WORKFLOW,
    ERASURE_WORKFLOW_ID_PREFIX,
    RowsErased,
)

# The statuses a run holds a book in; the erasure claims from every other one, and takes
# over the claim of a run in one of these that has ended.
HOLDING_STATUSES = frozenset({BookStatus.ILLUSTRATING, BookStatus.GENERATING, BookStatus.ERASING})

ERASURE_RUN = RunKind(
    holding=BookStatus.ERASING,
    start_from=frozenset(BookStatus) - {BookStatus.ERASING},
    workflow_type=BOOK_ERASURE_WORKFLOW,
    workflow_id_prefix=ERASURE_WORKFLOW_ID_PREFIX,
    not_ready=BookNotReady,  # never: every status but its own lets an erasure start
    busy=BookBeingErased,
)


def read_claim_if_any(session: Session, book_id: str) -> tuple[Claim, str] | None:
    """Who holds the book, and its owner; None when there is no such book."""
    book = session.get(Book, book_id)
    if book is None:
        return None
    return Claim(book.status, book.claim_workflow_id, book.claim_run_id), book.user_id


def claim_for_erasure(
    session: Session, book_id: str, workflow_id: str, run_id: str, stale_run_id: str | None
) -> bool:
    """Atomically move the book to `ERASING` for this run, and commit: from a status no run
    holds, when already ours, or from the claim of `stale_run_id` (a run the caller checked
    has ended). False when another run got there first (or the book is gone)."""
    book = session.get(Book, book_id)
    if book is None:
        return False
    if holds(book, ERASURE_RUN, run_id):
        return True
    if not take_claim(
        session,
        book,
        BookStatus.ERASING,
        from_statuses=frozenset(BookStatus) - HOLDING_STATUSES,
        workflow_id=workflow_id,
        run_id=run_id,
        stale_run_id=stale_run_id,
    ):
        return False
    session.commit()
    return True


def check_erasing(session: Session, book_id: str, run_id: str) -> None:
    """Assets may go only while this run holds the book, or once its row is gone."""
    book = session.get(Book, book_id)
    if book is not None and not holds(book, ERASURE_RUN, run_id):
        raise BookBusy(book_id, book.claim_workflow_id or f"(none; book is {book.status.value})")


def erase_rows(session: Session, book_id: str, run_id: str) -> RowsErased:
    """Delete the book's drafts, notifications, pages, its book budget and the book, in one
    transaction; a repeat (the book already gone) deletes nothing."""
    check_erasing(session, book_id, run_id)
    page_ids = select(Page.id).where(Page.book_id == book_id).scalar_subquery()
    drafts = session.execute(delete(PageDraft).where(PageDraft.page_id.in_(page_ids)))
    notes = session.execute(delete(Notification).where(Notification.book_id == book_id))
    pages = session.execute(delete(Page).where(Page.book_id == book_id))
    session.execute(delete(CostBudget).where(CostBudget.scope == book_scope(book_id)))
    books = session.execute(delete(Book).where(Book.id == book_id))
    session.commit()
    return RowsErased(
        books=books.rowcount,  # type: ignore[attr-defined]
        pages=pages.rowcount,  # type: ignore[attr-defined]
        page_drafts=drafts.rowcount,  # type: ignore[attr-defined]
        notifications=notes.rowcount,  # type: ignore[attr-defined]
    )


def books_of(session: Session, user_id: str) -> list[str]:
    """The ids of a parent's books, oldest first."""
    return list(
        session.scalars(
            select(Book.id).where(Book.user_id == user_id).order_by(Book.created_at, Book.id)
        )
    )
