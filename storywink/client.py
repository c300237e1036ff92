"""The Python client a web backend imports: start, watch and cancel a book's illustration.

client = await IllustrationClient.connect(load_settings())
run = await client.start_illustration(book_id)      # BookNotFound -> 404, BookNotReady -> 409
progress = await client.progress(book_id)
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError, RPCStatusCode

from storywink import books, pipeline
from storywink.config import Settings
from storywink.connections import connect_temporal, open_database
from storywink.db.engine import in_session
from storywink.db.models import Book
from storywink.errors import BookNotReady
from storywink.shared import (
    ILLUSTRATABLE_STATUSES,
    BookOutcome,
    BookStatus,
    IllustrationRequest,
    ModerationStatus,
    Progress,
)


@dataclass(frozen=True)
class IllustrationRun:
    book_id: str
    workflow_id: str
    run_id: str | None


class IllustrationClient:
    def __init__(self, temporal: Client, sessions: sessionmaker[Session], task_queue: str) -> None:
        self._temporal = temporal
        self._sessions = sessions
        self._task_queue = task_queue

    @classmethod
    async def connect(cls, settings: Settings) -> IllustrationClient:
        database = open_database(settings)
        temporal = await connect_temporal(settings)
        return cls(temporal, database.sessions, settings.temporal_task_queue)

    async def start_illustration(self, book_id: str) -> IllustrationRun:
        """Start the book's run, or return the one already running for it.

        Raises `BookNotFound` or `BookNotReady` (a clear refusal, HTTP 409).
        """
        claim = await in_session(self._sessions, books.read_claim, book_id)
        if claim.status is BookStatus.ILLUSTRATING and claim.workflow_id:
            if await self._is_running(claim.workflow_id, claim.run_id):
                return IllustrationRun(book_id, claim.workflow_id, claim.run_id)
            # The run holding the book ended without settling it (terminated): a new run
            # takes the claim over when it prepares.
        elif claim.status not in ILLUSTRATABLE_STATUSES:
            raise BookNotReady(book_id, claim.status)
        handle: WorkflowHandle[object, BookOutcome] = await self._temporal.start_workflow(
            pipeline.BOOK_ILLUSTRATION_WORKFLOW,
            IllustrationRequest(book_id=book_id),
            id=pipeline.workflow_id_for(book_id),
            task_queue=self._task_queue,
            result_type=BookOutcome,
            # Double clicks, two web replicas, the CLI: all land on the same run.
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        )
        return IllustrationRun(book_id, handle.id, handle.result_run_id)

    async def _is_running(self, workflow_id: str, run_id: str | None) -> bool:
        try:
            description = await self._temporal.get_workflow_handle(
                workflow_id, run_id=run_id
            ).describe()
        except RPCError as exc:
            if exc.status is not RPCStatusCode.NOT_FOUND:
                raise
            return False
        return description.status is WorkflowExecutionStatus.RUNNING

    def handle(self, book_id: str) -> WorkflowHandle[object, BookOutcome]:
        return self._temporal.get_workflow_handle(
            pipeline.workflow_id_for(book_id), result_type=BookOutcome
        )

    async def progress(self, book_id: str) -> Progress:
        """Live progress from the running workflow, or the settled state from the database."""
        book = await in_session(self._sessions, _load_book, book_id)
        if book.status is BookStatus.ILLUSTRATING and book.illustration_workflow_id:
            handle = self._temporal.get_workflow_handle(book.illustration_workflow_id)
            try:
                progress = await handle.query(pipeline.PROGRESS_QUERY, result_type=Progress)
                assert isinstance(progress, Progress)
                return progress
            except RPCError as exc:
                if exc.status is not RPCStatusCode.NOT_FOUND:
                    raise
        return progress_from_book(book)

    async def wait(self, book_id: str) -> BookOutcome:
        return await self.handle(book_id).result()

    async def cancel(self, book_id: str) -> None:
        """Ask the run to stop; pages in flight stop promptly and the book is still settled."""
        await self.handle(book_id).cancel()


def _load_book(session: Session, book_id: str) -> Book:
    book = books.get_book(session, book_id)
    _ = book.pages  # load before the session closes
    session.expunge_all()
    return book


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
