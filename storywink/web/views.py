"""Books and pages as the API shows them. A private picture is shown by a signed URL that
expires (`IMAGE_URL_TTL_SECONDS`), made for each answer; one in local storage by this
API's own route, which serves it to its book's owner only; a public one stored before
private images keeps its URL (storywink.pictures)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime

from fastapi import Request

from storywink.db.models import Book
from storywink.pictures import PictureSigner, is_legacy_url
from storywink.providers.local_storage import LocalImageStore
from storywink.web.schemas import BookSummary, BookView, PageView

PublicUrl = Callable[[str | None, int, str], str | None]


def picture_route(
    root: str, book_id: str, ref: str | None, page_number: int, kind: str
) -> str | None:
    """This API's route for a page's photo or picture (it answers the owner only), named
    for the asset (a redraw's new version is a new URL: the page shows it)."""
    if not ref:
        return None
    version = hashlib.sha256(ref.encode()).hexdigest()[:12]
    return f"{root}/books/{book_id}/pages/{page_number}/{kind}?v={version}"


class PageUrls:
    """The URLs one answer shows a book's pictures by, all signed to expire at once."""

    def __init__(self, signer: PictureSigner, root: str, book_id: str) -> None:
        self._signer = signer
        self._root = root
        self._book_id = book_id
        self._local = isinstance(signer.store, LocalImageStore)
        self.expires_at: datetime | None = None

    def __call__(self, ref: str | None, page_number: int, kind: str) -> str | None:
        if not ref:
            return None
        if ref.startswith(("http://", "https://")):
            return ref  # a public asset stored before private images
        if self._local or is_legacy_url(ref):
            return picture_route(self._root, self._book_id, ref, page_number, kind)
        if self.expires_at is None:
            self.expires_at = self._signer.expiry()
        return self._signer.url(ref, self.expires_at)


def root_of(request: Request) -> str:
    """The prefix the app is mounted under ("" at the root)."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def page_urls_for(request: Request, book_id: str, signer: PictureSigner) -> PageUrls:
    return PageUrls(signer, root_of(request), book_id)


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


def book_view(book: Book, urls: PageUrls) -> BookView:
    pages = [
        PageView(
            page_number=page.page_number,
            is_title_page=page.is_title_page,
            text=page.text,
            text_problem=page.text_problem,
            outcome=page.moderation_status,
            reason=page.moderation_reason,
            photo_url=urls(page.photo_ref, page.page_number, "photo"),
            image_url=urls(page.picture_ref, page.page_number, "image"),
            change_request=page.change_request,
            redraw_problem=page.redraw_problem,
        )
        for page in book.pages
    ]
    return BookView(
        **book_summary(book).model_dump(),
        story_error=book.story_error,
        cost_usd=book.cost_micro_usd / 1_000_000,
        pages=pages,
        urls_expire_at=urls.expires_at,
    )
