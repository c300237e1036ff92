"""Book-level steps of a story run: claim the book, record a story that gave up."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity
from temporalio.client import Client

from activities.failures import book_step
from storywink.book.claims import claim_for_run
from storywink.config import Settings
from storywink.contract import (
    ActivityOptions,
    BookStatus,
    StoryClaimInput,
    StoryFailure,
    StoryOutcome,
    StoryPage,
    StoryPlan,
)
from storywink.db.engine import in_session
from storywink.db.models import Book
from storywink.illustration.styles import STYLES
from storywink.story import records as story_books
from storywink.story.metrics import StoryFailureReason, story_failure, story_settled

# The story's voice for each art style; any other style gets the default.
TONES = {
    "vignette": "gentle, warm and quiet",
    "crayon": "playful, bouncy and funny",
    "storybook": "classic, cosy and a little magical",
}
DEFAULT_TONE = "warm and playful"


class StoryBookActivities:
    def __init__(
        self, sessions: sessionmaker[Session], temporal: Client, settings: Settings
    ) -> None:
        self._sessions = sessions
        self._temporal = temporal
        self._settings = settings

    @activity.defn
    @book_step
    async def claim_story(self, request: StoryClaimInput) -> StoryPlan:
        plan = await claim_for_run(
            self._sessions,
            self._temporal,
            story_books.STORY_RUN,
            request,
            lambda book, _stale_run_id: self._plan(book, request.run_id),
        )
        activity.logger.info(
            "book %s claimed for its story: %d pages", plan.book_id, len(plan.pages)
        )
        return plan

    @activity.defn
    @book_step
    async def record_story_failure(self, failure: StoryFailure) -> StoryOutcome:
        outcome = await in_session(
            self._sessions, story_books.fail_story, failure.book_id, failure.run_id, failure.reason
        )
        if outcome.status is BookStatus.FAILED:
            story_failure(StoryFailureReason.GAVE_UP)
            story_settled(BookStatus.FAILED.value)
        return outcome

    def _plan(self, book: Book, run_id: str) -> StoryPlan:
        style = STYLES.get(book.art_style)
        s = self._settings
        return StoryPlan(
            book_id=book.id,
            run_id=run_id,
            title=book.title,
            child_name=book.child_name,
            style_label=style.label if style else book.art_style,
            tone=TONES.get(book.art_style, DEFAULT_TONE),
            pages=tuple(
                StoryPage(
                    page_id=page.id,
                    page_number=page.page_number,
                    is_title_page=page.is_title_page,
                    original_image_url=(
                        page.original_image_url if not page.original_asset_id else None
                    ),
                    original_asset_id=page.original_asset_id,
                )
                for page in book.pages
            ),
            options=ActivityOptions(
                task_queue=s.temporal_story_task_queue,
                start_to_close_seconds=s.story_start_to_close_seconds,
                heartbeat_timeout_seconds=s.story_heartbeat_timeout_seconds,
                maximum_attempts=s.story_retry_attempts,
                initial_interval_seconds=s.story_retry_initial_seconds,
                maximum_interval_seconds=s.story_retry_max_seconds,
            ),
        )
