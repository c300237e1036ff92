"""Routes on books and their pages: create from photos, list, read, edit a page's text,
and the pictures of local storage."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Final, Literal
from urllib.parse import urlsplit
from urllib.request import url2pathname

from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, RedirectResponse, Response

from storywink.book.inputs import CHILD_NAME_MAX, TITLE_MAX, NewBook
from storywink.book.upload import create_book_from_photos
from storywink.db.engine import in_session
from storywink.illustration.styles import DEFAULT_STYLE, STYLES
from storywink.pictures import is_legacy_url
from storywink.providers.base import ImageStore, PermanentError
from storywink.providers.local_storage import LocalImageStore
from storywink.web.auth import CurrentParent, ViewingParent
from storywink.web.book_queries import Cursor, books_of, owned_book
from storywink.web.problems import PROBLEM_JSON, BadInput, NotFound, Problem
from storywink.web.schemas import BookList, BookView, PageTextChange, PageView
from storywink.web.services import Services, services
from storywink.web.uploads import received_book
from storywink.web.views import book_summary, book_view, page_urls_for

router = APIRouter(tags=["books"])
ServicesDep = Annotated[Services, Depends(services)]
BookId = Annotated[str, PathParam(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
PageNumber = Annotated[int, PathParam(ge=1, le=10_000)]


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the problem answers a route may give."""
    return {
        status: {"model": Problem, "content": {PROBLEM_JSON: {}}} for status in (401, *statuses)
    }


_UPLOAD_BODY: Final = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["photos", "title", "child_name"],
                    "properties": {
                        "photos": {
                            "type": "array",
                            "minItems": 1,
                            "items": {"type": "string", "format": "binary"},
                            "description": "JPEG, PNG or WebP photos in page order; "
                            "the first is the title page.",
                        },
                        "title": {"type": "string", "maxLength": TITLE_MAX, "pattern": r"\S"},
                        "child_name": {
                            "type": "string",
                            "maxLength": CHILD_NAME_MAX,
                            "pattern": r"\S",
                        },
                        "style": {"type": "string", "enum": list(STYLES)},
                        "story": {
                            "type": "string",
                            "description": 'Optional JSON {"pages": ["text for photo 1", ...]}',
                        },
                    },
                }
            }
        },
    }
}


@router.post(
    "/books",
    status_code=201,
    response_model=BookView,
    openapi_extra=_UPLOAD_BODY,
    responses=problems(413, 415, 422, 503),
    summary="Create a book from uploaded photos",
)
async def create_book(request: Request, parent: CurrentParent, app: ServicesDep) -> BookView:
    async with received_book(request, app.upload_limits) as upload:
        new_book = NewBook.checked(
            title=upload.title,
            child_name=upload.child_name,
            art_style=upload.style or DEFAULT_STYLE,
            user_id=parent.user_id,
        )
        book_id = await create_book_from_photos(
            app.store, app.database.sessions, new_book, upload.photos, upload.texts
        )
    book = await in_session(app.database.sessions, owned_book, book_id, parent.user_id)
    return book_view(book, page_urls_for(request, book_id, app.pictures))


@router.get(
    "/books", response_model=BookList, responses=problems(422, 503), summary="List my books"
)
async def list_books(
    parent: CurrentParent,
    app: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> BookList:
    try:
        after = Cursor.decode(cursor) if cursor else None
    except ValueError as exc:
        raise BadInput(f"cursor: {exc}") from None
    found, more = await in_session(app.database.sessions, books_of, parent.user_id, limit, after)
    return BookList(
        books=[book_summary(book) for book in found],
        next_cursor=more.encode() if more else None,
    )


@router.get(
    "/books/{book_id}",
    response_model=BookView,
    responses=problems(404, 422, 503),
    summary="Read one book with its pages",
)
async def read_book(
    request: Request, book_id: BookId, parent: CurrentParent, app: ServicesDep
) -> BookView:
    book = await in_session(app.database.sessions, owned_book, book_id, parent.user_id)
    return book_view(book, page_urls_for(request, book_id, app.pictures))


@router.put(
    "/books/{book_id}/pages/{page_number}/text",
    response_model=PageView,
    responses=problems(404, 409, 422, 503),
    summary="Change a page's text (not while a run works on the book)",
)
async def change_page_text(
    request: Request,
    book_id: BookId,
    page_number: PageNumber,
    change: PageTextChange,
    parent: CurrentParent,
    app: ServicesDep,
) -> PageView:
    book = await in_session(app.database.sessions, owned_book, book_id, parent.user_id)
    if not any(page.page_number == page_number for page in book.pages):
        raise NotFound(f"book {book_id} has no page {page_number}")
    await app.stories.update_page_text(book_id, page_number, change.text)
    book = await in_session(app.database.sessions, owned_book, book_id, parent.user_id)
    view = book_view(book, page_urls_for(request, book_id, app.pictures))
    return next(page for page in view.pages if page.page_number == page_number)


@router.get(
    "/books/{book_id}/pages/{page_number}/{kind}",
    response_class=Response,
    responses={
        200: {"content": {"image/png": {}, "image/jpeg": {}, "image/webp": {}}},
        307: {"description": "The picture is on the CDN"},
        **problems(404, 422, 503),
    },
    summary="A page's photo or illustration",
)
async def page_picture(
    book_id: BookId,
    page_number: PageNumber,
    kind: Literal["photo", "image"],
    parent: ViewingParent,
    app: ServicesDep,
) -> Response:
    book = await in_session(app.database.sessions, owned_book, book_id, parent.user_id)
    page = next((p for p in book.pages if p.page_number == page_number), None)
    if page is None:
        raise NotFound(f"book {book_id} has no page {page_number}")
    ref = page.photo_ref if kind == "photo" else page.picture_ref
    if not ref:
        raise NotFound(f"page {page_number} of book {book_id} has no {kind} yet")
    if ref.startswith(("http://", "https://")):  # public, stored before private images
        return RedirectResponse(ref, status_code=307)
    store = app.store
    if not is_legacy_url(ref) and not isinstance(store, LocalImageStore):
        signed = app.pictures.url(ref)
        assert signed is not None
        return RedirectResponse(signed, status_code=307, headers=_NOT_STORED)
    path = _stored_file(
        ref if is_legacy_url(ref) else _local_url(store, ref), app.settings.storage_dir
    )
    if path is None:
        raise NotFound(f"the {kind} of page {page_number} is not in local storage")
    return FileResponse(path, headers=_NOT_STORED)


# Only the owner's browser keeps a picture, and never a signed redirect past its expiry.
_NOT_STORED: Final = {"Cache-Control": "private, no-store"}


def _local_url(store: ImageStore, asset_id: str) -> str:
    """The `file://` URL of a local asset; "" for an id local storage cannot hold."""
    try:
        return store.signed_url(asset_id, datetime.now(UTC))  # local: the file's own URL
    except PermanentError:
        return ""


def _stored_file(url: str, root: Path) -> Path | None:
    """The file a `file://` URL names, only when it lies inside local storage."""
    parts = urlsplit(url)
    if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
        return None
    path = Path(os.path.realpath(url2pathname(parts.path)))
    if not path.is_relative_to(os.path.realpath(root)) or not path.is_file():
        return None
    return path
