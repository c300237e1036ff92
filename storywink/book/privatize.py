"""Moving the images of books stored before private images (migration 0008) to private
assets: `storywink images privatize` (docs/privacy.md).

For every page whose photo or picture is still a public URL, the image is fetched from that
URL, stored as a private asset under the book's unguessable name, recorded by its asset id
(the URL column cleared), and then the public asset is deleted from the CDN, so the old URL
stops working. One image at a time, each recorded before the next: run it again after any
failure and it goes on where it stopped. A book a run holds is left for a later pass.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Literal, Protocol, runtime_checkable

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from storywink import contract
from storywink.contract import BookStatus
from storywink.db.engine import in_session
from storywink.db.models import Book, Page, new_asset_salt
from storywink.pictures import asset_ref
from storywink.providers.base import GeneratedImage, ImageStore
from storywink.providers.fetch import ImageFetcher

Kind = Literal["photo", "picture"]
_HELD: Final = frozenset({BookStatus.ILLUSTRATING, BookStatus.GENERATING})
# The public id in a Cloudinary delivery URL: …/image/upload/[v123/]<public id>.<ext>
_DELIVERED_ID: Final = re.compile(r"/image/upload/(?:v\d+/)?(?P<id>storywink/[^?#]+?)\.\w+$")


@runtime_checkable
class _PublicDeleter(Protocol):
    async def delete_public(self, public_id: str) -> None: ...


@dataclass(frozen=True)
class LegacyImage:
    book_id: str
    page_id: str
    page_number: int
    kind: Kind
    url: str
    new_id: str


@dataclass
class Privatized:
    moved: list[LegacyImage] = field(default_factory=list)
    busy_books: list[str] = field(default_factory=list)  # held by a run: try again later
    left_public: list[str] = field(default_factory=list)  # stored privately, not deleted


def legacy_images(
    session: Session, book_ids: Sequence[str] | None
) -> tuple[list[LegacyImage], list[str]]:
    """The public images left on books no run holds, and the books a run holds. A book
    without a salt (one a previous release's worker created after migration 0008) gets one
    here, also on a dry run, so the names it reports are the ones the move will use."""
    query = select(Book).order_by(Book.created_at)
    if book_ids:
        query = query.where(Book.id.in_(book_ids))
    images, busy = [], []
    for book in session.scalars(query):
        public = [(page, kind, url) for page in book.pages for kind, url in _public_urls(page)]
        if not public:
            continue
        if book.status in _HELD:
            busy.append(book.id)
            continue
        if book.asset_salt is None:
            book.asset_salt = new_asset_salt()
        for page, kind, url in public:
            images.append(
                LegacyImage(
                    book.id, page.id, page.page_number, kind, url, _new_id(book, page, kind)
                )
            )
    session.commit()
    return images, busy


async def privatize(
    sessions: sessionmaker[Session],
    store: ImageStore,
    fetcher: ImageFetcher,
    book_ids: Sequence[str] | None = None,
    *,
    dry_run: bool = False,
) -> Privatized:
    images, busy = await in_session(sessions, legacy_images, book_ids)
    done = Privatized(busy_books=busy)
    for image in images:
        if dry_run:
            done.moved.append(image)
            continue
        fetched = await fetcher.fetch(image.url, f"{image.kind} of page {image.page_number}")
        stored = await store.store(
            GeneratedImage(fetched.data, fetched.mime_type),
            image.new_id,
            tags=[f"book_{image.book_id}", image.kind],
            context={"moved_from": "public"},
        )
        if await in_session(sessions, _record_moved, image, asset_ref(stored)):
            done.moved.append(image)
            if not await _delete_public(store, image):
                done.left_public.append(image.url)
    return done


def _public_urls(page: Page) -> list[tuple[Kind, str]]:
    found: list[tuple[Kind, str]] = []
    if page.original_asset_id is None and _is_public(page.original_image_url):
        found.append(("photo", page.original_image_url or ""))
    if page.generated_asset_id is None and _is_public(page.generated_image_url):
        found.append(("picture", page.generated_image_url or ""))
    return found


def _is_public(url: str | None) -> bool:
    return bool(url) and (url or "").startswith(("http://", "https://"))


def _new_id(book: Book, page: Page, kind: Kind) -> str:
    if kind == "photo":
        return contract.original_public_id(book.id, page.page_number, book.asset_salt)
    return contract.page_public_id(book.id, page.page_number, page.image_version, book.asset_salt)


def _record_moved(session: Session, image: LegacyImage, ref: str) -> bool:
    """Record the private asset in place of the URL, unless the page changed meanwhile."""
    page = session.get(Page, image.page_id)
    if page is None or page.book.status in _HELD:
        session.rollback()
        return False
    if image.kind == "photo" and page.original_image_url == image.url:
        page.original_asset_id, page.original_image_url = ref, None
    elif image.kind == "picture" and page.generated_image_url == image.url:
        page.generated_asset_id, page.generated_image_url = ref, None
    else:
        session.rollback()
        return False
    session.commit()
    return True


async def _delete_public(store: ImageStore, image: LegacyImage) -> bool:
    """Delete the public asset the URL names, when it is one of this book's on this CDN."""
    match = _DELIVERED_ID.search(image.url)
    folder = f"{contract.book_asset_folder(image.book_id)}/"
    if (
        not match
        or not match.group("id").startswith(folder)
        or not isinstance(store, _PublicDeleter)
    ):
        return False
    await store.delete_public(match.group("id"))
    return True
