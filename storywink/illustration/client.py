"""The Python client a web backend imports: start, watch and cancel a book's illustration.

client = await IllustrationClient.connect(load_settings())
run = await client.start_illustration(book_id)      # BookNotFound -> 404, BookNotReady -> 409
progress = await client.illustration_progress(book_id)
end = await client.wait_for_illustration_end(book_id)  # how the run ended, and the book after
outcome = await client.wait_for_illustration(book_id)  # its outcome, or RunEnded
pictures = await client.book_pictures(book_id)  # signed URLs, until pictures.expires_at
run = await client.redraw_page(book_id, 3, note="make the dog brown")  # one page again

Every call follows the run that holds the book's claim, whatever its workflow id (a run
started from the `temporal` CLI under another id included), and follows a reset: the
handle is by workflow id, never pinned to a run id.
"""

from __future__ import annotations

import asyncio
import time
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Final, TypeVar

from sqlalchemy.orm import Session, sessionmaker
from temporalio.api.enums.v1 import TaskQueueKind, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import (
    Client,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
)
from temporalio.exceptions import CancelledError, TerminatedError
from temporalio.exceptions import TimeoutError as WorkflowTimeout
from temporalio.service import RPCError, RPCStatusCode

from storywink import contract
from storywink.book.claims import BookRun, describe_run, join_or_start, workflow_working_on
from storywink.book.records import get_book
from storywink.book.refusals import NotIllustrating, RunEnded
from storywink.config import Settings
from storywink.contract import (
    SETTLED_STATUSES,
    BookOutcome,
    BookStatus,
    IllustrationRequest,
    ModerationStatus,
    Progress,
    RedrawAsk,
    RedrawOutcome,
)
from storywink.cost.report import BookCost, book_cost
from storywink.db.connection import open_database
from storywink.db.engine import in_session
from storywink.db.fleet import FLEET_MEMO, database_fleet
from storywink.db.models import Book
from storywink.illustration import records as books
from storywink.illustration.redraw_client import start_redraw, wait_for_redraw
from storywink.pictures import PictureSigner, picture_signer
from storywink.temporal.connection import (
    TemporalConnectionLost,
    connect_temporal,
    is_connection_lost,
)
from storywink.temporal.failures import innermost_message

T = TypeVar("T")
QUERY_TIMEOUT: Final = timedelta(seconds=3)
# How long a client following a run keeps trying through a lost connection to Temporal
# (a server restart, a network blip) before it gives up following; the run goes on.
CONNECTION_LOSS_LIMIT: Final = timedelta(seconds=60)
_RECONNECT_EVERY_SECONDS: Final = 1.0
# A poller's last access is when its current long poll (up to ~70 s) began.
LIVE_POLLER_WINDOW: Final = timedelta(seconds=90)


IllustrationRun = BookRun


class RunEnding(StrEnum):
    """How the run a caller waited for ended."""

    COMPLETED = "completed"  # returned its outcome
    CANCELLED = "cancelled"  # the book is still settled by the run's finalize
    TERMINATED = "terminated"
    TIMED_OUT = "timed out"
    FAILED = "failed"  # the run itself failed (e.g. refused the book)
    ALREADY_SETTLED = "already settled"  # no run worked on the book: it was settled before


@dataclass(frozen=True)
class BookState:
    """The book as the database has it."""

    status: BookStatus
    pages_total: int
    pages_with_image: int
    pages_flagged: int
    pages_failed: int

    @property
    def settled(self) -> bool:
        return self.status in SETTLED_STATUSES


@dataclass(frozen=True)
class RunEnd:
    book_id: str
    workflow_id: str | None
    run_id: str | None
    ending: RunEnding
    book: BookState  # read after the run ended
    outcome: BookOutcome | None  # the run's own result, when it completed
    reason: str | None = None  # why it ended, for the endings other than COMPLETED


@dataclass(frozen=True)
class PagePictures:
    page_number: int
    photo_url: str | None
    picture_url: str | None  # None until the page has a picture


@dataclass(frozen=True)
class BookPictures:
    """A book's images by signed URLs, all valid until `expires_at`."""

    book_id: str
    expires_at: datetime
    pages: tuple[PagePictures, ...]


@dataclass(frozen=True)
class QueuePollers:
    task_queue: str
    kind: str  # "workflow" or "activity"
    live: int  # pollers seen within LIVE_POLLER_WINDOW
    listed: int  # every poller the server still lists
    last_seen: datetime | None


class IllustrationClient:
    def __init__(
        self,
        temporal: Client,
        sessions: sessionmaker[Session],
        task_queue: str,
        page_task_queue: str | None = None,
        *,
        on_connection: Callable[[str], None] | None = None,
        pictures: PictureSigner | None = None,
    ) -> None:
        """`on_connection` hears, in one line each, that the connection to Temporal was
        lost while following a run, and that it is back. `pictures` signs the URLs
        `book_pictures` gives (`connect` builds it from the settings)."""
        self._pictures = pictures
        self._on_connection = on_connection
        self._temporal = temporal
        self._sessions = sessions
        self._task_queue = task_queue
        self._page_task_queue = page_task_queue

    @classmethod
    async def connect(
        cls, settings: Settings, on_connection: Callable[[str], None] | None = None
    ) -> IllustrationClient:
        database = open_database(settings)
        temporal = await connect_temporal(settings)
        return cls(
            temporal,
            database.sessions,
            settings.temporal_task_queue,
            settings.temporal_illustration_task_queue,
            on_connection=on_connection,
            pictures=picture_signer(settings),
        )

    async def book_pictures(self, book_id: str) -> BookPictures:
        """Every page's photo and picture by signed URLs, which stop working at
        `expires_at` (`IMAGE_URL_TTL_SECONDS` from now): ask again for new ones. Never
        store them; a public picture stored before private images keeps its URL."""
        if self._pictures is None:
            raise ValueError("this client was built without a picture signer (pictures=…)")
        signer = self._pictures
        book = await in_session(self._sessions, _load_book, book_id)
        expires_at = signer.expiry()
        return BookPictures(
            book_id=book.id,
            expires_at=expires_at,
            pages=tuple(
                PagePictures(
                    page_number=page.page_number,
                    photo_url=signer.url(page.photo_ref, expires_at),
                    picture_url=signer.url(page.picture_ref, expires_at),
                )
                for page in book.pages
            ),
        )

    async def start_illustration(
        self, book_id: str, priority: int | None = None
    ) -> IllustrationRun:
        """Start the book's run, or return the one already running for it. `priority`:
        1 (its pages first) to 5 (last); unset, 3. A running run keeps its own.

        Raises `BookNotFound` or `BookNotReady` (a clear refusal, HTTP 409).
        """
        fleet_id = await in_session(self._sessions, database_fleet)
        return await join_or_start(
            self._sessions,
            self._temporal,
            books.ILLUSTRATION_RUN,
            book_id,
            IllustrationRequest(book_id=book_id, priority=priority),
            task_queue=self._task_queue,
            result_type=BookOutcome,
            # Workers of another database leave the run to ours (activities.fleet_check).
            memo={FLEET_MEMO: fleet_id} if fleet_id else None,
        )

    async def redraw_page(self, book_id: str, page_number: int, note: str | None = None) -> BookRun:
        """Draw one page of a COMPLETED or PARTIAL book again, with the parent's `note` of
        what to change (at most `contract.CHANGE_REQUEST_LIMIT` characters); the page keeps
        its picture until the new one is recorded. Joins the book's redraw run while it
        works. Raises `BookNotFound`, `NoSuchPage`, `RedrawNotReady`, `BookBusy`, or
        pydantic's `ValidationError` for a note too long."""
        ask = RedrawAsk(page_number=page_number, note=(note or "").strip() or None)
        fleet_id = await in_session(self._sessions, database_fleet)
        return await start_redraw(
            self._sessions,
            self._temporal,
            ask,
            book_id,
            task_queue=self._task_queue,
            memo={FLEET_MEMO: fleet_id} if fleet_id else None,
        )

    async def wait_for_redraw(self, book_id: str) -> RedrawOutcome:
        """The outcome of the book's latest redraw run, once it has settled the book."""
        return await wait_for_redraw(self._temporal, book_id)

    async def cost_of(self, book_id: str) -> BookCost:
        """What the book's model calls cost so far, in total, for its story and per page,
        from the ledger (docs/costs.md). Raises `BookNotFound`."""
        return await in_session(self._sessions, book_cost, book_id)

    async def illustration_workflow_working_on(self, book_id: str) -> str | None:
        """The workflow id whose latest run works on the book, or None when none does.
        See `book.claims.workflow_working_on`."""
        return await workflow_working_on(
            self._sessions, self._temporal, books.ILLUSTRATION_RUN, book_id
        )

    def handle(self, book_id: str) -> WorkflowHandle[object, BookOutcome]:
        """The book's own workflow (`book-illustration-<id>`), latest run."""
        return self._temporal.get_workflow_handle(
            contract.illustration_workflow_id(book_id), result_type=BookOutcome
        )

    async def illustration_progress(self, book_id: str) -> Progress:
        """Live progress from the run working on the book, or the database's state."""
        workflow_id = await self.illustration_workflow_working_on(book_id)
        if workflow_id is not None:
            handle = self._temporal.get_workflow_handle(workflow_id)
            try:
                progress = await handle.query(
                    contract.PROGRESS_QUERY, result_type=Progress, rpc_timeout=QUERY_TIMEOUT
                )
            except (RPCError, WorkflowQueryFailedError, WorkflowQueryRejectedError):
                pass  # no worker answered in time, or the run is gone: the database knows
            else:
                assert isinstance(progress, Progress)
                return progress
        return progress_from_book(await in_session(self._sessions, _load_book, book_id))

    async def wait_for_illustration_end(self, book_id: str) -> RunEnd:
        """Wait until the run working on the book ends (following a reset's new run), and
        say how it ended; a book no run works on that is settled returns at once.

        Raises `BookNotFound`, or `NotIllustrating` for a book that is neither settled
        nor worked on (e.g. STORY_READY and never started)."""
        workflow_id = await self._through_outages(
            lambda: self.illustration_workflow_working_on(book_id)
        )
        if workflow_id is None:
            book = await in_session(self._sessions, _load_book, book_id)
            if book.status not in SETTLED_STATUSES:
                raise NotIllustrating(book_id, book.status)
            return RunEnd(book_id, None, None, RunEnding.ALREADY_SETTLED, book_state(book), None)
        return await self._follow(book_id, workflow_id)

    async def _through_outages(self, call: Callable[[], Awaitable[T]]) -> T:
        """`call()`, again after a lost connection to Temporal, for CONNECTION_LOSS_LIMIT
        at most; then `TemporalConnectionLost`. Refusals by the server are raised at once."""
        lost_at: float | None = None
        while True:
            try:
                result = await call()
            except RPCError as exc:
                if not is_connection_lost(exc):
                    raise
                now = time.monotonic()
                limit = CONNECTION_LOSS_LIMIT.total_seconds()
                if lost_at is None:
                    lost_at = now
                    self._say(
                        f"lost the connection to Temporal ({exc.message}); "
                        f"still following the run for up to {limit:g} s"
                    )
                elif now - lost_at > limit:
                    raise TemporalConnectionLost(
                        f"no connection to Temporal for {limit:g} s ({exc.message}); the run "
                        "goes on: run the command again to follow it"
                    ) from None
                await asyncio.sleep(_RECONNECT_EVERY_SECONDS)
                continue
            if lost_at is not None:
                self._say("connection to Temporal is back")
            return result

    def _say(self, line: str) -> None:
        if self._on_connection is not None:
            self._on_connection(line)

    async def _follow(self, book_id: str, workflow_id: str) -> RunEnd:
        while True:
            described = await self._through_outages(
                lambda: describe_run(self._temporal, workflow_id)
            )
            if described is None:
                book = await in_session(self._sessions, _load_book, book_id)
                unknown = f"Temporal knows no run of workflow {workflow_id}"
                return RunEnd(
                    book_id, workflow_id, None, RunEnding.FAILED, book_state(book), None, unknown
                )
            run_id = described.run_id
            handle = self._temporal.get_workflow_handle(
                workflow_id, run_id=run_id, result_type=BookOutcome
            )
            outcome: BookOutcome | None = None
            reason: str | None = None
            try:
                outcome = await self._through_outages(handle.result)
                ending = RunEnding.COMPLETED
            except WorkflowFailureError as failure:
                ending, reason = _ending_of(failure)
                latest = await self._through_outages(
                    lambda: describe_run(self._temporal, workflow_id)
                )
                if ending is RunEnding.TERMINATED and latest and latest.run_id != run_id:
                    continue  # a reset terminated this run and a new one carries on
            book = await in_session(self._sessions, _load_book, book_id)
            return RunEnd(book_id, workflow_id, run_id, ending, book_state(book), outcome, reason)

    async def wait_for_illustration(self, book_id: str) -> BookOutcome:
        """The outcome of the run working on the book (or of the book, already settled).

        Raises `RunEnded` when the run ended without an outcome (cancelled, terminated,
        timed out, failed)."""
        end = await self.wait_for_illustration_end(book_id)
        if end.outcome is not None:
            return end.outcome
        if end.ending is RunEnding.ALREADY_SETTLED:
            book = await in_session(self._sessions, _load_book, book_id)
            return outcome_from_book(book)
        raise RunEnded(book_id, end.ending.value, end.book.status, end.reason)

    # The names of an earlier release, kept for a web backend that calls them.
    async def progress(self, book_id: str) -> Progress:
        """Deprecated: `illustration_progress`."""
        _deprecated("progress", "illustration_progress")
        return await self.illustration_progress(book_id)

    async def wait_for_end(self, book_id: str) -> RunEnd:
        """Deprecated: `wait_for_illustration_end`."""
        _deprecated("wait_for_end", "wait_for_illustration_end")
        return await self.wait_for_illustration_end(book_id)

    async def wait(self, book_id: str) -> BookOutcome:
        """Deprecated: `wait_for_illustration`."""
        _deprecated("wait", "wait_for_illustration")
        return await self.wait_for_illustration(book_id)

    async def workflow_working_on(self, book_id: str) -> str | None:
        """Deprecated: `illustration_workflow_working_on`."""
        _deprecated("workflow_working_on", "illustration_workflow_working_on")
        return await self.illustration_workflow_working_on(book_id)

    async def cancel(self, book_id: str) -> bool:
        """Ask the run working on the book to stop; pages in flight stop promptly and the
        book is still settled. False when no run works on it."""
        workflow_id = await self.illustration_workflow_working_on(book_id)
        if workflow_id is None:
            return False
        try:
            await self._temporal.get_workflow_handle(workflow_id).cancel()
        except RPCError as exc:
            if exc.status is not RPCStatusCode.NOT_FOUND:
                raise
            return False  # it ended meanwhile
        return True

    async def task_queue_pollers(self) -> list[QueuePollers]:
        """Who polls the workflow queue (and the page queue, when known)."""
        queues = [(self._task_queue, TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW)]
        if self._page_task_queue:
            queues.append((self._page_task_queue, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY))
        return [await self._pollers(name, kind) for name, kind in queues]

    async def _pollers(self, task_queue: str, kind: TaskQueueType.ValueType) -> QueuePollers:
        response = await self._temporal.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=self._temporal.namespace,
                task_queue=TaskQueue(name=task_queue, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL),
                task_queue_type=kind,
            )
        )
        seen = [
            poller.last_access_time.ToDatetime(tzinfo=UTC)
            for poller in response.pollers
            if poller.HasField("last_access_time")
        ]
        now = datetime.now(UTC)
        return QueuePollers(
            task_queue=task_queue,
            kind="workflow" if kind == TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW else "activity",
            live=sum(now - moment <= LIVE_POLLER_WINDOW for moment in seen),
            listed=len(response.pollers),
            last_seen=max(seen, default=None),
        )


def _deprecated(old: str, new: str) -> None:
    warnings.warn(
        f"IllustrationClient.{old} is deprecated: use {new}", DeprecationWarning, stacklevel=3
    )


def _ending_of(failure: WorkflowFailureError) -> tuple[RunEnding, str | None]:
    cause = failure.cause
    if isinstance(cause, CancelledError):
        return RunEnding.CANCELLED, None
    if isinstance(cause, TerminatedError):
        return RunEnding.TERMINATED, cause.message or None
    if isinstance(cause, WorkflowTimeout):
        return RunEnding.TIMED_OUT, None
    return RunEnding.FAILED, innermost_message(cause)


def _load_book(session: Session, book_id: str) -> Book:
    book = get_book(session, book_id)
    _ = book.pages  # load before the session closes
    session.expunge_all()
    return book


def book_state(book: Book) -> BookState:
    statuses = [page.moderation_status for page in book.pages]
    return BookState(
        status=book.status,
        pages_total=len(statuses),
        pages_with_image=sum(page.has_image for page in book.pages),
        pages_flagged=statuses.count(ModerationStatus.FLAGGED),
        pages_failed=statuses.count(ModerationStatus.FAILED),
    )


def outcome_from_book(book: Book) -> BookOutcome:
    """The outcome of a settled book, as its last run's finalize returned it."""
    return books.outcome_of(book, book.status)


def progress_from_book(book: Book) -> Progress:
    statuses = [page.moderation_status for page in book.pages]
    flagged = statuses.count(ModerationStatus.FLAGGED)
    failed = statuses.count(ModerationStatus.FAILED)
    return Progress(
        book_id=book.id,
        phase="illustrating" if book.status is BookStatus.ILLUSTRATING else "settled",
        total=len(statuses),
        to_draw=len(statuses),
        done=len(statuses) - statuses.count(ModerationStatus.PENDING),
        flagged=flagged,
        failed=failed,
        status=book.status,
    )
