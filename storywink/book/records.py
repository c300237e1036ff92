"""The book's row and its claim, as every run kind reads, takes and releases it.

A claim is the book's working status (the kind's `holding`) plus the workflow id and run
chain in `claim_workflow_id` / `claim_run_id`: a book is held by at most one run of one
kind, so one claim says which run may change it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from sqlalchemy import update
from sqlalchemy.orm import Session

from storywink.book.refusals import BookBusy, BookError, BookNotFound, refuse_while_erased
from storywink.contract import BookStatus
from storywink.db.models import Book


@dataclass(frozen=True)
class RunKind:
    """One kind of run that claims a book: what holds it, and what refuses it."""

    holding: BookStatus  # the book's status while a run of this kind holds it
    start_from: frozenset[BookStatus]  # the statuses a run may claim the book from
    workflow_type: str
    workflow_id_prefix: str  # the book's own workflow id is the prefix and the book id
    not_ready: Callable[[str, BookStatus], BookError]  # the book's status refuses the run
    busy: Callable[[str, str], BookBusy]  # another run (its workflow id) holds the book
    # Book columns a claim sets with it, in the same UPDATE (e.g. the last story's error).
    reset_columns: Mapping[str, object] = field(default_factory=dict)
    # Refuses a book before it is claimed (raises); e.g. a style the library lacks.
    check_book: Callable[[Book], None] | None = None
    # What the claim resets beyond its columns, given the status the book was claimed from.
    reset_book: Callable[[Book, BookStatus], None] | None = None

    def workflow_id(self, book_id: str) -> str:
        return f"{self.workflow_id_prefix}{book_id}"


@dataclass(frozen=True)
class Claim:
    """Who holds the book right now."""

    status: BookStatus
    workflow_id: str | None
    run_id: str | None


def get_book(session: Session, book_id: str) -> Book:
    book = session.get(Book, book_id)
    if book is None:
        raise BookNotFound(book_id)
    return book


def read_claim(session: Session, book_id: str) -> Claim:
    book = get_book(session, book_id)
    return Claim(book.status, book.claim_workflow_id, book.claim_run_id)


def holds(book: Book, kind: RunKind, run_id: str) -> bool:
    """Whether `run_id` (a run chain) holds the book as a run of `kind`."""
    return book.status is kind.holding and book.claim_run_id == run_id


def release(book: Book, status: BookStatus) -> None:
    """The run lets the book go, settled as `status` (committed by the caller)."""
    book.status = status
    book.claim_run_id = None
    book.claim_workflow_id = None


def claim(
    session: Session,
    kind: RunKind,
    book_id: str,
    workflow_id: str,
    run_id: str,
    *,
    stale_run_id: str | None = None,
) -> Book:
    """Atomically move the book to `kind.holding` for this run, and commit: from one of
    `kind.start_from`, when already ours (a retried activity), or from the claim of
    `stale_run_id` (a run of this kind the caller checked has ended).

    Raises `kind.not_ready` when the book's status refuses the run, `kind.busy` when
    another run got there first."""
    book = get_book(session, book_id)
    if kind.holding is not BookStatus.ERASING:
        refuse_while_erased(book_id, book.status, book.claim_workflow_id)
    if kind.check_book is not None:
        kind.check_book(book)
    if holds(book, kind, run_id):
        return book
    claimed_from = book.status
    takeover = book.status is kind.holding and stale_run_id is not None
    if not takeover and book.status not in kind.start_from:
        raise kind.not_ready(book_id, book.status)
    if not take_claim(
        session,
        book,
        kind.holding,
        from_statuses=kind.start_from,
        workflow_id=workflow_id,
        run_id=run_id,
        stale_run_id=stale_run_id if takeover else None,
        **kind.reset_columns,
    ):
        current = get_book(session, book_id)
        refuse_while_erased(book_id, current.status, current.claim_workflow_id)
        if current.status is kind.holding and current.claim_workflow_id:
            raise kind.busy(book_id, current.claim_workflow_id)
        raise kind.not_ready(book_id, current.status)
    if kind.reset_book is not None:
        kind.reset_book(book, claimed_from)
    session.commit()
    session.refresh(book)
    return book


def take_claim(
    session: Session,
    book: Book,
    holding: BookStatus,
    *,
    from_statuses: frozenset[BookStatus],
    workflow_id: str,
    run_id: str,
    stale_run_id: str | None,
    **values: object,
) -> bool:
    """One atomic UPDATE moves the book to `holding` for this run: from one of
    `from_statuses`, or, given `stale_run_id`, from the claim of that run (one the caller
    checked has ended). False, with the session rolled back, when another run got there
    first: at most one run ever holds a book."""
    guard = (
        Book.claim_run_id == stale_run_id
        if stale_run_id is not None
        else Book.status.in_(from_statuses)
    )
    claimed = session.execute(
        update(Book)
        .where(Book.id == book.id, guard)
        .values(status=holding, claim_workflow_id=workflow_id, claim_run_id=run_id, **values)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        session.rollback()
        return False
    return True
