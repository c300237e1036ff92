"""What a test of whole runs works with, in one fixture instead of four by hand.

`pipeline` runs on the offline providers (the Pillow illustrator, local storage);
`fake_pipeline` on the fake Gemini and Cloudinary through the real SDKs (the test asks for
`fakes` too when it sets their faults). Both hold the dev server's client, the test's
database and settings with task queues of their own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from pathlib import Path

from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from storywink.config import Settings
from storywink.contract import BookOutcome, BookStatus, StoryOutcome
from storywink.db.connection import Database
from storywink.db.models import Book, Notification, Page
from storywink.illustration.client import IllustrationClient
from storywink.providers.factory import Providers
from storywink.story.client import StoryClient
from tests.support import helpers
from tests.support.provider_fakes import SettingsFactory
from tests.support.services import test_settings


@dataclass(frozen=True)
class Pipeline:
    client: Client
    database: Database
    settings: Settings
    configure: SettingsFactory  # settings with these overrides, and task queues of their own
    photos: Callable[[str, int], list[str]]  # URLs of `count` sample photos, by a folder name

    def picture_id(self, book_id: str, page_number: int, version: int = 0) -> str:
        """The asset id a page's picture is stored under (named with the book's salt)."""
        return helpers.picture_id(self.database, book_id, page_number, version)

    def with_settings(self, **overrides: object) -> Pipeline:
        """The same pipeline on other settings (and so on task queues of its own)."""
        return replace(self, settings=self.configure(**overrides))

    def book(
        self,
        pages: int | Sequence[str | None],
        *,
        photos: str = "photos",
        status: BookStatus = BookStatus.STORY_READY,
        title: str = "Mia's Big Day",
        user_id: str = "user-1",
    ) -> str:
        """A book with a text on every page, of `pages` sample photos (in a folder of that
        name) or of these photo URLs."""
        urls = self.photos(photos, pages) if isinstance(pages, int) else pages
        return helpers.create_book(self.database, urls, status=status, title=title, user_id=user_id)

    def draft(
        self, pages: int | Sequence[str], *, photos: str = "photos", title: str = "Mia's Big Day"
    ) -> str:
        """A book as `storywink book create` leaves it without --story: DRAFT, no text."""
        urls = self.photos(photos, pages) if isinstance(pages, int) else list(pages)
        return helpers.draft_book(self.database, urls, title)

    def worker(self, providers: Providers | None = None) -> AbstractAsyncContextManager[Providers]:
        """A real worker (both pollers) in this process, as `python worker.py` builds it."""
        return helpers.running_worker(self.client, self.settings, self.database, providers)

    async def start(
        self, book_id: str, priority: int | None = None
    ) -> WorkflowHandle[object, BookOutcome]:
        return await helpers.start(self.client, self.settings, book_id, priority)

    async def illustrate(self, book_id: str, *, history: str | None = None) -> BookOutcome:
        """Illustrate the book with a worker running for just this run; its outcome."""
        return await helpers.illustrate(
            self.client, self.settings, self.database, book_id, history=history
        )

    async def start_story(self, book_id: str) -> WorkflowHandle[object, StoryOutcome]:
        return await helpers.start_story(self.client, self.settings.temporal_task_queue, book_id)

    def story_client(self) -> StoryClient:
        return StoryClient(self.client, self.database.sessions, self.settings.temporal_task_queue)

    def illustration_client(self) -> IllustrationClient:
        return IllustrationClient(
            self.client, self.database.sessions, self.settings.temporal_task_queue
        )

    def load(self, book_id: str) -> tuple[Book, list[Page], list[Notification]]:
        return helpers.load_book(self.database, book_id)


def offline_pipeline(
    env: WorkflowEnvironment, database_url: str, database: Database, tmp_path: Path
) -> Pipeline:
    """A pipeline on the offline providers, its photos under `tmp_path`."""

    def configure(**overrides: object) -> Settings:
        return test_settings(env, database_url, tmp_path, **overrides)

    def photos(folder: str, count: int) -> list[str]:
        return helpers.photo_urls(tmp_path / "storage" / folder, count)

    return Pipeline(env.client, database, configure(), configure, photos)
