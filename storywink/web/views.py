"""Books and pages as the API shows them. A picture in local storage (`file://`) is
served by the API itself; one on the CDN keeps its own URL."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC
from functools import partial

from fastapi import Request

from storywink.db.models import Book
from storywink.web.schemas import BookSummary, BookView, PageView

PublicUrl = Callable[[str | None, int, str], str | None]


def public_url(
    root: str, book_id: str, stored: str | None, page_number: int, kind: str
) -> str | None:
    """What a browser can load: the CDN's URL, or this API's route for local storage, named
    for the stored file (a redraw's new version is a new URL: the page shows it)."""
    if not stored:
        return None
    if stored.startswith(("http://", "https://")):
        return stored
    version = hashlib.sha256(stored.encode()).hexdigest()[:12]
    return f"{root}/books/{book_id}/pages/{page_number}/{kind}?v={version}"


def root_of(request: Request) -> str:
    """The prefix the app is mounted under ("" at the root)."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def public_url_for(request: Request, book_id: str) -> PublicUrl:
    return partial(public_url, root_of(request), book_id)


def book_summary(book: Book) -> BookSummary:
    return BookSummary(
        id=book.id,
        title=book.title,
        child_name=book.child_name,
        art_style=book.art_style,
        status=book.status,
        pages_total=len(book.pages),
        # SQLite hands back the stored UTC time without its zone.
        created_at=book.created_at.replace(tzinfo=book.created_at.tzinfo or UTC),
    )


def book_view(book: Book, public_url: PublicUrl) -> BookView:
    return BookView(
        **book_summary(book).model_dump(),
        story_error=book.story_error,
        cost_usd=book.cost_micro_usd / 1_000_000,
        pages=[
            PageView(
                page_number=page.page_number,
                is_title_page=page.is_title_page,
                text=page.text,
                text_problem=page.text_problem,
                outcome=page.moderation_status,
                reason=page.moderation_reason,
                photo_url=public_url(page.original_image_url, page.page_number, "photo"),
                image_url=public_url(page.generated_image_url, page.page_number, "image"),
                change_request=page.change_request,
                redraw_problem=page.redraw_problem,
            )
            for page in book.pages
        ],
    )
