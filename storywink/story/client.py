"""The Python client a web backend imports for stories: start, watch, wait, edit a page.

client = StoryClient(temporal, sessions, settings.temporal_task_queue)
run = await client.start_story(book_id)       # BookNotFound -> 404, StoryNotAllowed -> 409
progress = await client.story_progress(book_id)
outcome = await client.wait_for_story(book_id)  # STORY_READY, or FAILED with its reason
await client.update_page_text(book_id, 3, "Mia found a shell.")  # PageTextRefused -> 409/422

Every call follows the run holding the book's claim, whatever its workflow id (a run
started from the `temporal` CLI under another id included).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Final

from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import (
    Client,
    WorkflowFailureError,
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
)
from temporalio.service import RPCError

from storywink.book.claims import BookRun, join_or_start, workflow_working_on
from storywink.book.refusals import BookError
from storywink.config import Settings
from storywink.contract import (
    STORY_PROGRESS_QUERY,
    BookStatus,
    StoryOutcome,
    StoryProgress,
    StoryRequest,
)
from storywink.db.connection import open_database
from storywink.db.engine import in_session
from storywink.story import records as story_books
from storywink.temporal.connection import connect_temporal
from storywink.temporal.failures import innermost_message

QUERY_TIMEOUT: Final = timedelta(seconds=3)


StoryRun = BookRun


class StoryRunEnded(BookError):
    """The story run ended without an outcome (failed, cancelled, terminated, timed out)."""

    error_type = "StoryRunEnded"

    def __init__(self, book_id: str, reason: str | None, status: BookStatus) -> None:
        detail = f": {reason}" if reason else ""
        super().__init__(f"the story run of book {book_id} ended without a story{detail}")
        self.book_id = book_id
        self.reason = reason
        self.status = status


class StoryClient:
    def __init__(self, temporal: Client, sessions: sessionmaker[Session], task_queue: str) -> None:
        self._temporal = temporal
        self._sessions = sessions
        self._task_queue = task_queue

    @classmethod
    async def connect(cls, settings: Settings) -> StoryClient:
        database = open_database(settings)
        temporal = await connect_temporal(settings)
        return cls(temporal, database.sessions, settings.temporal_task_queue)

    async def start_story(self, book_id: str) -> StoryRun:
        """Start the book's story run, or return the one already running for it.

        Raises `BookNotFound` or `StoryNotAllowed` (the book is STORY_READY, or being
        illustrated)."""
        return await join_or_start(
            self._sessions,
            self._temporal,
            story_books.STORY_RUN,
            book_id,
            StoryRequest(book_id=book_id),
            task_queue=self._task_queue,
            result_type=StoryOutcome,
        )

    async def story_workflow_working_on(self, book_id: str) -> str | None:
        """The workflow id whose run writes the book's story, or None when none does."""
        return await workflow_working_on(
            self._sessions, self._temporal, story_books.STORY_RUN, book_id
        )

    async def story_progress(self, book_id: str) -> StoryProgress:
        """Live progress from the run writing the story, or the database's state."""
        workflow_id = await self.story_workflow_working_on(book_id)
        if workflow_id is not None:
            try:
                progress = await self._temporal.get_workflow_handle(workflow_id).query(
                    STORY_PROGRESS_QUERY, result_type=StoryProgress, rpc_timeout=QUERY_TIMEOUT
                )
            except (RPCError, WorkflowQueryFailedError, WorkflowQueryRejectedError):
                pass  # no worker answered in time, or the run is gone: the database knows
            else:
                assert isinstance(progress, StoryProgress)
                return progress
        state = await in_session(self._sessions, story_books.story_state, book_id)
        return StoryProgress(
            book_id=book_id,
            phase="settled",
            status=state.status,
            pages=state.pages_written,
            reason=state.reason,
        )

    async def wait_for_story(self, book_id: str) -> StoryOutcome:
        """The outcome of the run writing the story; with no run, the book as it stands.

        Raises `StoryRunEnded` when the run ended without an outcome."""
        workflow_id = await self.story_workflow_working_on(book_id)
        if workflow_id is not None:
            handle = self._temporal.get_workflow_handle(workflow_id, result_type=StoryOutcome)
            try:
                outcome = await handle.result()
            except WorkflowFailureError as failure:
                state = await in_session(self._sessions, story_books.story_state, book_id)
                raise StoryRunEnded(
                    book_id, innermost_message(failure.cause), state.status
                ) from None
            assert isinstance(outcome, StoryOutcome)
            return outcome
        return await in_session(self._sessions, story_books.story_state, book_id)

    async def update_page_text(self, book_id: str, page_number: int, text: str) -> None:
        """Change one page's text (a parent's edit); refused while a run works on the book.

        Raises `BookNotFound` or `PageTextRefused`."""
        await in_session(self._sessions, story_books.update_page_text, book_id, page_number, text)
