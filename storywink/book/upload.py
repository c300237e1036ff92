"""Create a book from a parent's photos: normalise them, upload them, write the book.

Every photo is normalised (`storywink.images.normalise_photo`) into a temporary folder
before the first upload, so a photo that does not decode is refused by name with nothing
uploaded, and only one photo is in memory at a time. A failure after the upload started
leaves nothing behind: the originals already uploaded are deleted. The originals are
private assets named with the book's new asset salt (contract.original_public_id).
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Protocol, runtime_checkable

from sqlalchemy.orm import Session, sessionmaker

from storywink import contract
from storywink.book.inputs import BookInputError, NewBook
from storywink.contract import BookStatus
from storywink.db.engine import in_session
from storywink.db.models import new_asset_salt, new_id
from storywink.illustration import records as books
from storywink.images import NotAnImage, Photo, normalise_photo
from storywink.pictures import asset_ref
from storywink.providers.base import GeneratedImage, ImageStore
from storywink.providers.local_storage import LocalImageStore


@runtime_checkable
class _DeletingStore(Protocol):
    async def delete(self, public_id: str) -> None: ...


async def _discard_originals(store: ImageStore, public_ids: list[str]) -> list[str]:
    """Delete what a failed `book create` uploaded; the ids it could not delete."""
    if isinstance(store, LocalImageStore):
        for public_id in public_ids:
            path = store.path_for(public_id)
            for leftover in (path, path.with_name(path.name + ".json")):
                leftover.unlink(missing_ok=True)
        return []
    if isinstance(store, _DeletingStore):
        for public_id in public_ids:
            await store.delete(public_id)
        return []
    return public_ids


async def create_book_from_photos(
    store: ImageStore,
    sessions: sessionmaker[Session],
    book: NewBook,
    photos: list[Path],
    texts: list[str] | None,
) -> str:
    """Normalise every photo, upload them, then write the book; on any failure the
    uploads are deleted."""
    with tempfile.TemporaryDirectory(prefix="storywink-photos-") as spool:
        ready = [
            await asyncio.to_thread(_normalise_into, Path(spool), number, photo)
            for number, photo in enumerate(photos, start=1)
        ]
        return await _upload_and_create(store, sessions, book, ready, texts)


def _normalise_into(spool: Path, number: int, photo: Path) -> tuple[Path, str]:
    """The photo normalised into `spool` (its path and mime type), or `BookInputError`."""
    try:
        normal: Photo = normalise_photo(photo.read_bytes())
    except NotAnImage as exc:
        raise BookInputError(f"{photo}: {exc}") from None
    except OSError as exc:
        raise BookInputError(f"{photo}: cannot be read: {exc.strerror}") from None
    path = spool / f"page_{number}"
    try:
        path.write_bytes(normal.data)
    except OSError as exc:
        where = f"cannot write the normalised photos to {spool} (TMPDIR)"
        raise OSError(exc.errno, f"{where}: {exc.strerror}") from None
    return path, normal.mime_type


async def _upload_and_create(
    store: ImageStore,
    sessions: sessionmaker[Session],
    book: NewBook,
    photos: list[tuple[Path, str]],
    texts: list[str] | None,
) -> str:
    book_id = new_id()
    salt = new_asset_salt()
    uploaded: list[str] = []
    try:
        refs = []
        for number, (photo, mime) in enumerate(photos, start=1):
            data = await asyncio.to_thread(photo.read_bytes)
            public_id = contract.original_public_id(book_id, number, salt)
            uploaded.append(public_id)  # before the call: a timed-out upload may have landed
            stored = await store.store(
                GeneratedImage(data, mime),
                public_id,
                tags=[f"book_{book_id}", "original"],
                context={},
            )
            refs.append(asset_ref(stored))
        new_pages = [
            books.NewPage(ref, text=texts[i] if texts else None) for i, ref in enumerate(refs)
        ]
        created = await in_session(
            sessions,
            books.create_book,
            book_id=book_id,
            user_id=book.user_id,
            title=book.title,
            child_name=book.child_name,
            art_style=book.art_style,
            pages=new_pages,
            status=BookStatus.STORY_READY if texts else BookStatus.DRAFT,
            asset_salt=salt,
        )
    except BaseException as exc:
        left = await _discard_originals(store, uploaded)
        if left:
            exc.add_note(
                f"up to {len(left)} originals uploaded to the {store.name} store remain "
                f"under {contract.book_asset_folder(book_id)}/originals (it cannot delete them)"
            )
        raise
    return created.id
