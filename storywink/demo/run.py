"""The demo's steps: a sample book, workers in this process, a gallery of the result."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from storywink.book.inputs import NewBook
from storywink.book.records import get_book
from storywink.book.upload import create_book_from_photos
from storywink.config import Settings
from storywink.db.connection import Database
from storywink.demo.gallery import GalleryPage, write_gallery
from storywink.demo.sample_book import (
    SAMPLE_CHILD_NAME,
    SAMPLE_TITLE,
    write_sample_photos,
)
from storywink.illustration.client import IllustrationClient
from storywink.illustration.styles import DEFAULT_STYLE
from storywink.pictures import PictureSigner
from storywink.providers.factory import build_providers, build_store
from storywink.providers.local_storage import LocalImageStore
from storywink.story.client import StoryClient
from storywink.temporal.connection import connect_temporal
from storywink.worker.assembly import build_workers


async def create_sample_book(
    settings: Settings, database: Database, pages: int, photos_dir: Path
) -> str:
    """A DRAFT book of `pages` generated photos: its story run writes the text."""
    return await create_book_from_photos(
        build_store(settings),
        database.sessions,
        NewBook(title=SAMPLE_TITLE, child_name=SAMPLE_CHILD_NAME, art_style=DEFAULT_STYLE),
        write_sample_photos(photos_dir, pages),
        None,
    )


@dataclass(frozen=True)
class DemoClients:
    stories: StoryClient
    illustrations: IllustrationClient


@asynccontextmanager
async def workers_in_process(settings: Settings, database: Database) -> AsyncIterator[DemoClients]:
    """The same workers `python worker.py` runs, in this process, and clients for them."""
    temporal = await connect_temporal(settings)
    providers = build_providers(settings)
    try:
        async with AsyncExitStack() as stack:
            for worker in build_workers(temporal, settings, database, providers):
                await stack.enter_async_context(worker)
            yield DemoClients(
                stories=StoryClient(temporal, database.sessions, settings.temporal_task_queue),
                illustrations=IllustrationClient(
                    temporal,
                    database.sessions,
                    settings.temporal_task_queue,
                    settings.temporal_illustration_task_queue,
                ),
            )
    finally:
        await providers.aclose()


def write_book_gallery(
    database: Database, book_id: str, status: str, path: Path, pictures: PictureSigner
) -> Path:
    """An HTML page with every page's photo, text and picture, shown by signed URLs that
    expire (`IMAGE_URL_TTL_SECONDS`; local files by their path)."""
    expires_at = pictures.expiry()
    with database.sessions() as session:
        book = get_book(session, book_id)
        return write_gallery(
            path,
            title=book.title,
            status=status,
            urls_expire_at=None if isinstance(pictures.store, LocalImageStore) else expires_at,
            pages=[
                GalleryPage(
                    page_number=p.page_number,
                    text=p.text,
                    original_image_url=pictures.url(p.photo_ref, expires_at),
                    generated_image_url=pictures.url(p.picture_ref, expires_at),
                    moderation_status=p.moderation_status.value,
                    moderation_reason=p.moderation_reason,
                )
                for p in book.pages
            ],
        )
