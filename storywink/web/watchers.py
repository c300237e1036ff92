"""One progress watcher per book per process, shared by every open stream of that book.

A parent with three tabs, or a family watching, costs one progress read from Temporal per
interval for the book, not one per viewer. The watcher starts with the book's first
stream and stops with its last.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Final

from prometheus_client import Counter, Gauge
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from temporalio.service import RPCError

from storywink.book.records import get_book
from storywink.book.refusals import BookNotFound
from storywink.contract import SETTLED_STATUSES, BookStatus, ModerationStatus, Progress
from storywink.db.engine import DatabaseNotReady, in_session
from storywink.illustration.client import IllustrationClient

log = logging.getLogger(__name__)

PROGRESS_READS: Final = Counter(
    "storywink_web_progress_reads_total", "Progress reads of the web backend's book watchers"
)
OPEN_STREAMS: Final = Gauge("storywink_web_streams_open", "Open event streams")
WATCHERS: Final = Gauge("storywink_web_watchers", "Books watched (one watcher each)")


@dataclass(frozen=True)
class PageState:
    page_number: int
    is_title_page: bool
    text: str | None
    outcome: ModerationStatus
    reason: str | None
    photo_ref: str | None  # asset refs (storywink.pictures), never a signed URL
    picture_ref: str | None

    @property
    def settled(self) -> bool:
        return self.outcome is not ModerationStatus.PENDING


@dataclass(frozen=True)
class BookSnapshot:
    """What every stream of the book is told, as of one read."""

    book_id: str
    status: BookStatus
    claim: str | None  # the run chain holding (or last holding) the book
    story_error: str | None
    progress: Progress
    pages: tuple[PageState, ...]
    gone: bool = False  # the book was deleted

    @property
    def finished(self) -> bool:
        """Settled, and no run works on it any more: the outcome is final."""
        return self.gone or (self.status in SETTLED_STATUSES and self.progress.phase == "settled")


def _read_pages(
    session: Session, book_id: str
) -> tuple[BookStatus, str | None, str | None, tuple[PageState, ...]]:
    book = get_book(session, book_id)
    pages = tuple(
        PageState(
            page_number=page.page_number,
            is_title_page=page.is_title_page,
            text=page.text,
            outcome=page.moderation_status,
            reason=page.moderation_reason,
            photo_ref=page.photo_ref,
            picture_ref=page.picture_ref,
        )
        for page in book.pages
    )
    return book.status, book.claim_run_id, book.story_error, pages


class BookWatcher:
    """Reads one book's progress every interval and publishes what changed."""

    def __init__(
        self,
        book_id: str,
        illustrations: IllustrationClient,
        sessions: sessionmaker[Session],
        interval_seconds: float,
    ) -> None:
        self.book_id = book_id
        self._illustrations = illustrations
        self._sessions = sessions
        self._interval = interval_seconds
        self._latest: BookSnapshot | None = None
        self._version = 0
        self._changed = asyncio.Event()
        self.viewers = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"watch book {self.book_id}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def next_snapshot(self, seen_version: int) -> tuple[BookSnapshot, int]:
        """The first snapshot newer than `seen_version` (0: none seen yet)."""
        while self._version <= seen_version or self._latest is None:
            await self._changed.wait()
        return self._latest, self._version

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_read = loop.time()
        while True:
            try:
                snapshot = await self._read()
            except (RPCError, SQLAlchemyError, DatabaseNotReady) as exc:
                log.warning("book %s: cannot read progress (%s)", self.book_id, type(exc).__name__)
            else:
                self._publish(snapshot)
                if snapshot.gone:
                    return
            # A steady cadence, whatever a read takes; a read longer than the interval
            # is followed by the next at once, never by a burst.
            next_read = max(next_read + self._interval, loop.time())
            await asyncio.sleep(next_read - loop.time())

    async def _read(self) -> BookSnapshot:
        try:
            PROGRESS_READS.inc()
            progress = await self._illustrations.illustration_progress(self.book_id)
            status, claim, story_error, pages = await in_session(
                self._sessions, _read_pages, self.book_id
            )
        except BookNotFound:
            gone = Progress(book_id=self.book_id, phase="settled")
            return BookSnapshot(self.book_id, BookStatus.FAILED, None, None, gone, (), gone=True)
        return BookSnapshot(self.book_id, status, claim, story_error, progress, pages)

    def _publish(self, snapshot: BookSnapshot) -> None:
        if snapshot == self._latest:
            return
        self._latest = snapshot
        self._version += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()


class WatcherRegistry:
    """The process's watchers, by book."""

    def __init__(
        self,
        illustrations: IllustrationClient,
        sessions: sessionmaker[Session],
        interval_seconds: float,
    ) -> None:
        self._illustrations = illustrations
        self._sessions = sessions
        self._interval = interval_seconds
        self._watchers: dict[str, BookWatcher] = {}

    @property
    def watched_books(self) -> int:
        return len(self._watchers)

    @contextlib.asynccontextmanager
    async def watch(self, book_id: str) -> AsyncIterator[BookWatcher]:
        """The book's watcher for as long as the caller's stream is open."""
        watcher = self._watchers.get(book_id)
        if watcher is None:
            watcher = BookWatcher(book_id, self._illustrations, self._sessions, self._interval)
            self._watchers[book_id] = watcher
            watcher.start()
            WATCHERS.inc()
        watcher.viewers += 1
        OPEN_STREAMS.inc()
        try:
            yield watcher
        finally:
            OPEN_STREAMS.dec()
            watcher.viewers -= 1
            if watcher.viewers == 0 and self._watchers.get(book_id) is watcher:
                del self._watchers[book_id]
                WATCHERS.dec()
                await watcher.stop()

    async def close(self) -> None:
        for watcher in list(self._watchers.values()):
            await watcher.stop()
        self._watchers.clear()
