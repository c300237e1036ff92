"""The records and tasks tests need by the dozen, built in one place: a book with its pages
in a session, and page tasks for a workflow test's own activities (a recorded page's task
is `activities.prepare.page_task`, as prepare builds it).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from storywink.contract import BookStatus, PageTask, StyleSnapshot
from storywink.db.models import Book
from storywink.illustration import records as books


def new_book(
    session: Session,
    photos: Sequence[str | None],
    *,
    texts: Sequence[str | None] | None = None,
    status: BookStatus = BookStatus.STORY_READY,
    title: str = "Mia's Big Day",
    user_id: str = "user-1",
    art_style: str = "vignette",
) -> Book:
    """A book of one page per photo (the first is the title page), for Mia, with these
    texts or none, written in `session`."""
    page_texts = texts if texts is not None else [None] * len(photos)
    return books.create_book(
        session,
        user_id=user_id,
        title=title,
        child_name="Mia",
        art_style=art_style,
        pages=[books.NewPage(url, text=text) for url, text in zip(photos, page_texts, strict=True)],
        status=status,
    )


def story_texts(title: str, pages: int) -> list[str]:
    """The texts of a written story: the title on the title page, then "Page n of the story."."""
    return [title, *(f"Page {n} of the story." for n in range(2, pages + 1))]


def page_tasks(style: StyleSnapshot, pages: int, book_id: str = "b1") -> tuple[PageTask, ...]:
    """The tasks of a book no database holds, for a workflow test's own activities."""
    return tuple(
        PageTask(
            book_id=book_id,
            book_title="T",
            page_id=f"p{n}",
            page_number=n,
            is_title_page=n == 1,
            original_image_url=f"https://cdn.example/p{n}.jpg",
            text="text",
            illustration_notes=None,
            style=style,
            run_id="r",
        )
        for n in range(1, pages + 1)
    )
