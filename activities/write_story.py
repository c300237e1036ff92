"""Write one book's story: fetch the photos, ask the writer, check the answer, record it.

Outcomes: STORY_READY with every page's text (one transaction); FAILED at once when the
model refuses or the request can never succeed (400/401/403, a missing photo); FAILED with
what was wrong when the last allowed attempt still gets an unusable answer. Transient
errors (429 with its RetryInfo delay, 5xx, timeouts, resets) and unusable answers before
the last attempt are raised for Temporal to retry. A repeat after the story was recorded
(a worker died before reporting) calls no model: it returns the book as recorded.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.failures import stage_failure
from activities.heartbeat import heartbeating
from storywink.contract import (
    STORY_STAGE_ERROR,
    STORY_UNUSABLE_ANSWER,
    BookStatus,
    StoryOutcome,
    StoryPage,
    StoryPlan,
)
from storywink.cost.meter import CallMeter
from storywink.db.engine import in_session
from storywink.pictures import url_to_fetch
from storywink.providers.base import ContentRefused, ImageStore, PermanentError, TransientError
from storywink.providers.fetch import ImageFetcher
from storywink.providers.story import StoryJob, StoryJobPage, StoryWriter, UnusableAnswer
from storywink.redact import Redactor
from storywink.story import records as story_books
from storywink.story.answer import PageText, check_answer
from storywink.story.metrics import (
    StoryFailureReason,
    story_failure,
    story_settled,
    timed_story_call,
)


class _StorySettled(Exception):
    """A final FAILED reached mid-way: record it and stop."""

    def __init__(
        self, reason: str, kind: StoryFailureReason, page_problems: dict[int, str] | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind
        self.page_problems = page_problems or {}


class WriteStoryActivities:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        writer: StoryWriter,
        fetcher: ImageFetcher,
        redactor: Redactor,
        meter: CallMeter | None = None,
        store: ImageStore | None = None,
    ) -> None:
        """`store` signs the fetches of private photos (pages that keep an asset id)."""
        self._store = store
        self._meter = meter or CallMeter(sessions)
        self._sessions = sessions
        self._writer = writer
        self._fetcher = fetcher
        self._redact = redactor

    @activity.defn
    async def write_story(self, plan: StoryPlan) -> StoryOutcome:
        started = time.monotonic()
        async with heartbeating():
            with self._stage("record"):
                recorded = await in_session(
                    self._sessions, story_books.settled_story, plan.book_id, plan.run_id
                )
            if recorded is not None:
                activity.logger.info("book %s: story already recorded", plan.book_id)
                return recorded
            try:
                texts = await self._write(plan)
            except _StorySettled as settled:
                story_failure(settled.kind)
                activity.logger.warning("book %s: story FAILED: %s", plan.book_id, settled.reason)
                with self._stage("record"):
                    outcome = await in_session(
                        self._sessions,
                        story_books.fail_story,
                        plan.book_id,
                        plan.run_id,
                        settled.reason,
                        settled.page_problems,
                    )
            else:
                with self._stage("record"):
                    outcome = await in_session(
                        self._sessions, story_books.record_story, plan.book_id, plan.run_id, texts
                    )
        if outcome.status in (BookStatus.STORY_READY, BookStatus.FAILED):
            story_settled(outcome.status.value, time.monotonic() - started)
        return outcome

    def _photo_url(self, page: StoryPage) -> str | None:
        """The photo's URL, signed now when it is a private asset."""
        if page.original_asset_id and self._store is not None:
            return url_to_fetch(self._store, page.original_asset_id)
        return page.original_image_url

    async def _write(self, plan: StoryPlan) -> list[PageText]:
        pages = []
        for page in plan.pages:
            photo = None
            if self._writer.uses_photos:
                url = self._photo_url(page)
                if url is None:
                    raise _StorySettled(
                        f"fetch photo: page {page.page_number} has no photo",
                        StoryFailureReason.REJECTED,
                    )
                with self._stage("fetch photo"):
                    photo = await self._fetcher.fetch(url, f"photo of page {page.page_number}")
            pages.append(StoryJobPage(page.page_number, page.is_title_page, photo))
        job = StoryJob(
            title=plan.title,
            child_name=plan.child_name,
            style_label=plan.style_label,
            tone=plan.tone,
            pages=tuple(pages),
        )
        with self._stage("write"):
            # Its ledger row and budget reservation first (storywink.cost.meter).
            answer = await self._meter.story_call(
                book_id=plan.book_id,
                run_id=plan.run_id,
                pages=len(plan.pages),
                call=lambda: timed_story_call(self._writer.write(job)),
            )
            return check_answer(
                answer,
                title=plan.title,
                page_numbers=[p.page_number for p in plan.pages],
                title_page=next((p.page_number for p in plan.pages if p.is_title_page), None),
            )

    @contextlib.contextmanager
    def _stage(self, stage: str) -> Iterator[None]:
        """Turn what goes wrong in `stage` into a settled FAILED or a retry."""
        try:
            yield
        except ContentRefused as exc:
            raise _StorySettled(
                f"{stage}: refused: {self._redact(exc.reason)}", StoryFailureReason.REFUSED
            ) from None
        except PermanentError as exc:
            raise _StorySettled(
                f"{stage}: {self._redact(exc.reason)}", StoryFailureReason.REJECTED
            ) from None
        except UnusableAnswer as exc:
            reason = f"{stage}: {self._redact(exc.reason)}"
            attempt = activity.info().attempt
            if _last_attempt():
                raise _StorySettled(
                    f"{reason} (attempt {attempt}, the last)",
                    StoryFailureReason.UNUSABLE,
                    exc.page_problems,
                ) from None
            story_failure(StoryFailureReason.UNUSABLE)
            raise ApplicationError(reason, type=STORY_UNUSABLE_ANSWER) from None
        except TransientError as exc:
            story_failure(StoryFailureReason.TRANSIENT)
            raise stage_failure(stage, exc, STORY_STAGE_ERROR, self._redact) from None
        except (_StorySettled, ApplicationError):
            raise
        except Exception as exc:
            failure = stage_failure(stage, exc, STORY_STAGE_ERROR, self._redact)
            if failure.type == STORY_STAGE_ERROR:  # unforeseen: not a refusal, not the database
                story_failure(StoryFailureReason.ERROR)
            raise failure from None


def _last_attempt() -> bool:
    """Whether Temporal will not retry this attempt (its policy's attempts are used up)."""
    info = activity.info()
    policy = info.retry_policy
    return policy is not None and 0 < policy.maximum_attempts <= info.attempt
