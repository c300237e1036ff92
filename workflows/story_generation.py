"""The `StoryGeneration` workflow: claim the book, write its story, or record why not.

Only orchestration lives here; every side effect is an idempotent activity.
"""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.exceptions import ActivityError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from activities.story_book import StoryBookActivities
    from activities.write_story import WriteStoryActivities
    from storywink import contract
    from storywink.contract import (
        STORY_PROGRESS_QUERY,
        STORY_WORKFLOW,
        BookStatus,
        StoryClaimInput,
        StoryFailure,
        StoryOutcome,
        StoryPlan,
        StoryProgress,
        StoryRequest,
    )
    from workflows.common import book_step, failure_reason, request_from

CANCELLED_REASON = "cancelled: the story run was cancelled before the story was written"


@workflow.defn(name=STORY_WORKFLOW)
class StoryGeneration:
    def __init__(self) -> None:
        self._progress = StoryProgress(book_id="", phase="starting")

    # `*inputs`, as in BookIllustration: a bad start fails the run with a clear message.
    @workflow.run
    async def run(self, *inputs: object) -> StoryOutcome:
        request = request_from(StoryRequest, STORY_WORKFLOW, inputs)
        workflow.upsert_search_attributes([contract.BOOK_ID_ATTRIBUTE.value_set(request.book_id)])
        self._set_progress(book_id=request.book_id, phase="claiming")
        info = workflow.info()
        claim = info.first_execution_run_id  # kept by a reset: a reset run goes on
        try:
            # Waits for a cancelled claim to end, so a book claimed as the cancel came is
            # still released below.
            plan = await book_step(
                StoryBookActivities.claim_story,
                StoryClaimInput(
                    book_id=request.book_id, workflow_id=info.workflow_id, run_id=claim
                ),
                cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            )
            self._set_progress(phase="writing", pages=len(plan.pages))
            outcome = await self._write(plan)
        except (asyncio.CancelledError, ActivityError) as error:
            if not is_cancelled_exception(error):
                raise
            # Released only if this run holds the book: a no-op otherwise.
            outcome = await self._record_failure(request.book_id, claim, CANCELLED_REASON)
            self._settle(outcome.model_copy(update={"cancelled": True}))
            raise asyncio.CancelledError("story run cancelled; book released") from None
        self._settle(outcome)
        return outcome

    @workflow.query(name=STORY_PROGRESS_QUERY)
    def progress(self) -> StoryProgress:
        return self._progress

    async def _write(self, plan: StoryPlan) -> StoryOutcome:
        options = plan.options
        try:
            return await workflow.execute_activity_method(
                WriteStoryActivities.write_story,
                plan,
                task_queue=options.task_queue,
                start_to_close_timeout=options.start_to_close,
                heartbeat_timeout=options.heartbeat_timeout,
                retry_policy=options.retry_policy(),
                summary="story",
            )
        except ActivityError as error:
            if is_cancelled_exception(error):
                raise
            return await self._record_failure(
                plan.book_id, plan.run_id, failure_reason(error, "story")
            )

    async def _record_failure(self, book_id: str, run_id: str, reason: str) -> StoryOutcome:
        return await book_step(
            StoryBookActivities.record_story_failure,
            StoryFailure(book_id=book_id, run_id=run_id, reason=reason),
        )

    def _settle(self, outcome: StoryOutcome) -> None:
        workflow.upsert_search_attributes(
            [contract.OUTCOME_ATTRIBUTE.value_set(outcome.status.value)]
        )
        phase = (
            "cancelled"
            if outcome.cancelled
            else ("done" if outcome.status is BookStatus.STORY_READY else "failed")
        )
        self._set_progress(phase=phase, status=outcome.status, reason=outcome.reason)

    def _set_progress(self, **changes: object) -> None:
        self._progress = self._progress.model_copy(update=changes)
        p = self._progress
        reason = f": {p.reason}" if p.reason else ""
        workflow.set_current_details(f"**{p.phase}** — story of {p.pages} pages{reason}")
