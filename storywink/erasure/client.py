"""The Python client a web backend imports to erase a book, or every book of a parent.

client = ErasureClient(temporal, sessions, settings.temporal_task_queue)
run = await client.erase_book(book_id)            # BookNotFound -> 404; joins a running one
outcome = await client.wait_for_erasure(book_id)  # the book is gone everywhere
runs = await client.erase_books_of(user_id)       # an account deletion: one run per book

The erasure first stops a run working on the book (illustration, story, page redraw) and
waits for it to settle; while it runs, every other start on the book is refused
(`BookBeingErased`, HTTP 409). docs/erasure.md says what it removes and what stays.
"""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client

from storywink.book.claims import BookRun, join_or_start
from storywink.book.refusals import BookNotFound
from storywink.config import Settings
from storywink.db.connection import open_database
from storywink.db.engine import in_session
from storywink.erasure import records
from storywink.erasure.contract import ErasureOutcome, ErasureRequest, erasure_workflow_id
from storywink.temporal.connection import connect_temporal


class ErasureClient:
    def __init__(self, temporal: Client, sessions: sessionmaker[Session], task_queue: str) -> None:
        self._temporal = temporal
        self._sessions = sessions
        self._task_queue = task_queue

    @classmethod
    async def connect(cls, settings: Settings) -> ErasureClient:
        database = open_database(settings)
        temporal = await connect_temporal(settings)
        return cls(temporal, database.sessions, settings.temporal_task_queue)

    async def erase_book(self, book_id: str) -> BookRun:
        """Start the book's erasure, or return the one already running for it (double
        clicks, two web replicas, the CLI: one run). Raises `BookNotFound`."""
        return await join_or_start(
            self._sessions,
            self._temporal,
            records.ERASURE_RUN,
            book_id,
            ErasureRequest(book_id=book_id),
            task_queue=self._task_queue,
            result_type=ErasureOutcome,
        )

    async def wait_for_erasure(self, book_id: str) -> ErasureOutcome:
        """The outcome of the book's latest erasure run, once it has finished."""
        handle = self._temporal.get_workflow_handle(
            erasure_workflow_id(book_id), result_type=ErasureOutcome
        )
        outcome: ErasureOutcome = await handle.result()
        return outcome

    async def erase_books_of(self, user_id: str) -> list[BookRun]:
        """Start the erasure of every book of a parent (an account deletion)."""
        book_ids = await in_session(self._sessions, records.books_of, user_id)
        runs = []
        for book_id in book_ids:
            try:
                runs.append(await self.erase_book(book_id))
            except BookNotFound:
                continue  # erased meanwhile
        return runs
