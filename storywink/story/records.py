"""Every database read and write of a story run, each idempotent.

The story run holds the book through the same claim as an illustration run
(`storywink.book.records`): a book is GENERATING or ILLUSTRATING, never both, so one
claim says which run may change it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy.orm import Session

from storywink.book.records import RunKind, get_book, holds, release
from storywink.book.refusals import BookBusy, BookError, refuse_while_erased
from storywink.contract import (
    STORY_WORKFLOW,
    STORY_WORKFLOW_ID_PREFIX,
    STORY_WRITABLE_STATUSES,
    BookStatus,
    StoryOutcome,
)
from storywink.db.models import Book, Page
from storywink.illustration import records as books
from storywink.redact import shorten
from storywink.story.answer import PageText, clean_text, page_text_problem

REASON_LIMIT = 400


class StoryNotAllowed(BookError):
    """The book's status does not allow a story run (HTTP 409)."""

    error_type = "BookNotReady"

    def __init__(self, book_id: str, status: BookStatus) -> None:
        super().__init__(
            f"book {book_id} is {status.value}; a story can be written for DRAFT, FAILED, "
            "COMPLETED or PARTIAL books"
        )
        self.book_id = book_id
        self.status = status


class StoryBusy(BookBusy):
    def __init__(self, book_id: str, workflow_id: str) -> None:
        super().__init__(book_id, workflow_id)
        self.args = (f"book {book_id} is held by workflow {workflow_id}",)


class PageTextRefused(BookError):
    """A page's text cannot be set: no such page, a run holds the book, or bad text."""

    error_type = "PageTextRefused"


class PageTextBusy(PageTextRefused):
    """Refused because a story or illustration run works on the book (HTTP 409)."""


# A story run claims the book through storywink.book.records.claim, clearing the last
# story's error with it.
STORY_RUN = RunKind(
    holding=BookStatus.GENERATING,
    start_from=STORY_WRITABLE_STATUSES,
    workflow_type=STORY_WORKFLOW,
    workflow_id_prefix=STORY_WORKFLOW_ID_PREFIX,
    not_ready=StoryNotAllowed,
    busy=StoryBusy,
    reset_columns={"story_error": None},
)


def _holds(book: Book, run_id: str) -> bool:
    return holds(book, STORY_RUN, run_id)


def _outcome(book: Book, reason: str | None = None) -> StoryOutcome:
    written = sum(1 for page in book.pages if (page.text or "").strip())
    return StoryOutcome(
        book_id=book.id,
        status=book.status,
        pages_written=written,
        reason=reason if reason is not None else book.story_error,
    )


def settled_story(session: Session, book_id: str, run_id: str) -> StoryOutcome | None:
    """None while the run holds the book (its story is still to write), else the book."""
    book = get_book(session, book_id)
    return None if _holds(book, run_id) else _outcome(book)


def record_story(
    session: Session, book_id: str, run_id: str, texts: Sequence[PageText]
) -> StoryOutcome:
    """Every page's text and notes, and STORY_READY, in one transaction. A repeat, or a
    run that no longer holds the book, changes nothing and gets the book as it stands."""
    book = get_book(session, book_id)
    if not _holds(book, run_id):
        session.rollback()
        return _outcome(book)
    by_number = {text.page_number: text for text in texts}
    for page in book.pages:
        written = by_number[page.page_number]
        page.text = written.text
        page.illustration_notes = written.illustration_notes
        page.text_problem = None
    book.story_error = None
    release(book, BookStatus.STORY_READY)
    session.commit()
    return _outcome(book)


def fail_story(
    session: Session,
    book_id: str,
    run_id: str,
    reason: str,
    page_problems: Mapping[int, str] | None = None,
) -> StoryOutcome:
    """FAILED with `reason`, the pages named in `page_problems` marked with theirs; a
    repeat, or a run that no longer holds the book, changes nothing."""
    book = get_book(session, book_id)
    reason = shorten(reason, REASON_LIMIT)
    if not _holds(book, run_id):
        session.rollback()
        return _outcome(book, None)
    for page in book.pages:
        problem = (page_problems or {}).get(page.page_number)
        page.text_problem = shorten(problem, REASON_LIMIT) if problem else None
    book.story_error = reason
    release(book, BookStatus.FAILED)
    session.commit()
    return _outcome(book, reason)


def story_state(session: Session, book_id: str) -> StoryOutcome:
    return _outcome(get_book(session, book_id))


def _drawn_as(book: Book, page: Page) -> str | None:
    """How the page was settled when its next illustration run will not draw it again
    (smart retry keeps pictures and refusals; a STORY_READY book is drawn anew)."""
    if book.status in (BookStatus.DRAFT, BookStatus.STORY_READY) or books.needs_drawing(page):
        return None
    return "already illustrated" if page.has_image else "declined by the image model"


def update_page_text(session: Session, book_id: str, page_number: int, text: str) -> Page:
    """A parent's edit of one page's text before illustration (never while a run works)."""
    # Locked, so no run can claim the book between this check and the commit.
    book = session.get(Book, book_id, with_for_update=True) or get_book(session, book_id)
    refuse_while_erased(book_id, book.status, book.claim_workflow_id)
    if book.status in (BookStatus.GENERATING, BookStatus.ILLUSTRATING):
        raise PageTextBusy(
            f"book {book_id} is {book.status.value}: wait until its run ends to edit text"
        )
    page = next((p for p in book.pages if p.page_number == page_number), None)
    if page is None:
        raise PageTextRefused(f"book {book_id} has no page {page_number}")
    if (drawn := _drawn_as(book, page)) is not None:
        raise PageTextRefused(
            f"page {page_number} of book {book_id} is {drawn} (book {book.status.value}) and "
            "is not drawn again, so its picture would no longer match the text; write a new "
            "story (`storywink story`) to draw the book again"
        )
    cleaned = clean_text(text)
    if problem := page_text_problem(cleaned, is_title_page=page.is_title_page):
        raise PageTextRefused(f"page {page_number}: {problem}")
    page.text = cleaned
    page.text_problem = None
    session.commit()
    return page
