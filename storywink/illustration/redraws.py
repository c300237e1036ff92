"""A parent's redraw of pages, as the database keeps it: the claim a redraw run takes,
the versions it draws, and how its outcome is recorded.

A redraw claims the book through the claim every run kind shares (storywink.book.records),
holding it ILLUSTRATING as an illustration run does, so at most one run of either kind
works on a book. Its pages are drawn by the page activity and recorded by
`records.record_page` (a redraw's version given): they keep their pictures until the new
ones are recorded.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.orm import Session

from storywink.book.records import RunKind
from storywink.book.refusals import BookBusy, NoSuchPage, PageNotFound, RedrawNotReady
from storywink.contract import (
    PAGE_REDRAW_WORKFLOW,
    PAGE_REDRAW_WORKFLOW_ID_PREFIX,
    REDRAWABLE_STATUSES,
    BookStatus,
    NumberedAsk,
)
from storywink.db.models import Book, Page
from storywink.illustration.records import check_style

REDRAW_RUN = RunKind(
    holding=BookStatus.ILLUSTRATING,
    start_from=REDRAWABLE_STATUSES,
    workflow_type=PAGE_REDRAW_WORKFLOW,
    workflow_id_prefix=PAGE_REDRAW_WORKFLOW_ID_PREFIX,
    not_ready=RedrawNotReady,
    busy=BookBusy,
    check_book=check_style,
)


def page_numbered(book: Book, page_number: int) -> Page:
    for page in book.pages:
        if page.page_number == page_number:
            return page
    raise NoSuchPage(book.id, page_number, len(book.pages))


def pages_asked(
    book: Book, asks: Iterable[NumberedAsk]
) -> tuple[list[tuple[Page, NumberedAsk]], list[str]]:
    """The pages to draw for `asks` (the last ask of a page wins), and the asks refused."""
    wanted: dict[int, tuple[Page, NumberedAsk]] = {}
    refused: list[str] = []
    for ask in asks:
        try:
            wanted[ask.page_number] = (page_numbered(book, ask.page_number), ask)
        except NoSuchPage as exc:
            refused.append(str(exc))
    return [wanted[number] for number in sorted(wanted)], refused


def next_version(page: Page) -> int:
    return page.image_version + 1


def page_for_redraw(session: Session, page_id: str) -> Page:
    page = session.get(Page, page_id)
    if page is None:
        raise PageNotFound(page_id)
    return page
