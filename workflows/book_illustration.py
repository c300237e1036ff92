"""The `BookIllustration` workflow: prepare, draw every page in parallel, finalize.

Only orchestration lives here: no I/O, clocks or randomness. Every side effect is an
idempotent activity; Temporal owns dispatch, locking, retries and replay.
"""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.common import Priority

with workflow.unsafe.imports_passed_through():
    from activities.finalize import FinalizeActivities
    from activities.prepare import PrepareActivities
    from storywink import contract
    from storywink.contract import (
        ActivityOptions,
        BookOutcome,
        FinalizeInput,
        IllustrationPlan,
        IllustrationRequest,
        ModerationStatus,
        PageResult,
        PageTask,
        PrepareInput,
        Progress,
    )
    from workflows.common import book_step, draw_page, request_from


def _page_priority(user_id: str, priority: int | None) -> Priority:
    """Pages are served fairly between parents (one fairness key per account: a big book
    does not hold up other parents' small ones), and by the book's priority first."""
    return Priority(priority_key=priority, fairness_key=user_id)


# No `failure_exception_types`: a result this code cannot decode (from a newer activity
# during a rolling deploy) fails the workflow task, which is retried, never the run.
@workflow.defn(name=contract.BOOK_ILLUSTRATION_WORKFLOW)
class BookIllustration:
    def __init__(self) -> None:
        self._progress = Progress(book_id="", phase="starting")
        self._page_priority = Priority.default

    # `*inputs` rather than one typed parameter: a start with no input or with two must
    # fail the run with a clear message, not a TypeError that retries the task forever.
    @workflow.run
    async def run(self, *inputs: object) -> BookOutcome:
        request = request_from(IllustrationRequest, contract.BOOK_ILLUSTRATION_WORKFLOW, inputs)
        workflow.upsert_search_attributes([contract.BOOK_ID_ATTRIBUTE.value_set(request.book_id)])
        self._set_progress(book_id=request.book_id, phase="preparing")
        info = workflow.info()
        # The claim on the book is the run's chain, which a reset keeps: a reset run goes on
        # with the book, the pages and the outcomes its earlier run recorded.
        claim = info.first_execution_run_id
        cancelled = False
        try:
            plan = await book_step(
                PrepareActivities.prepare_illustration,
                PrepareInput(book_id=request.book_id, workflow_id=info.workflow_id, run_id=claim),
            )
        except asyncio.CancelledError:
            cancelled = True
        else:
            workflow.upsert_search_attributes([contract.USER_ID_ATTRIBUTE.value_set(plan.user_id)])
            if workflow.patched(contract.PAGE_PRIORITY_PATCH):
                self._page_priority = _page_priority(plan.user_id, request.priority)
            cancelled = await self._illustrate_pages(plan)
        self._set_progress(phase="finalizing")
        outcome = await book_step(
            FinalizeActivities.finalize_book,
            FinalizeInput(
                book_id=request.book_id,
                run_id=claim,
                settling_run_id=info.run_id,
                cancelled=cancelled,
            ),
        )
        workflow.upsert_search_attributes(
            [contract.OUTCOME_ATTRIBUTE.value_set(outcome.status.value)]
        )
        self._set_progress(phase="cancelled" if cancelled else "done", status=outcome.status)
        if cancelled:
            raise asyncio.CancelledError("illustration run cancelled; book settled")
        return outcome

    @workflow.query(name=contract.PROGRESS_QUERY)
    def progress(self) -> Progress:
        return self._progress

    async def _illustrate_pages(self, plan: IllustrationPlan) -> bool:
        """Draw every planned page in parallel; return whether the run was cancelled."""
        self._set_progress(phase="illustrating", total=plan.total_pages, to_draw=len(plan.pages))
        # return_exceptions: on cancel, wait until every page has stopped (and recorded
        # where), instead of moving on when the first, never-started page is cancelled.
        try:
            results = await asyncio.gather(
                *(self._illustrate(page, plan.page_options) for page in plan.pages),
                return_exceptions=True,
            )
        except asyncio.CancelledError:
            return True
        for result in results:
            if isinstance(result, asyncio.CancelledError):
                return True
            if isinstance(result, BaseException):
                raise result
        return False

    async def _illustrate(self, page: PageTask, options: ActivityOptions) -> None:
        self._count(await draw_page(page, options, self._page_priority))

    def _count(self, result: PageResult) -> None:
        p = self._progress
        if result.moderation_status is ModerationStatus.FLAGGED:
            self._set_progress(done=p.done + 1, flagged=p.flagged + 1)
        elif result.moderation_status is ModerationStatus.FAILED:
            self._set_progress(done=p.done + 1, failed=p.failed + 1)
        else:
            self._set_progress(done=p.done + 1)

    def _set_progress(self, **changes: object) -> None:
        self._progress = self._progress.model_copy(update=changes)
        p = self._progress
        workflow.set_current_details(
            f"**{p.phase}** — {p.done}/{p.to_draw} pages drawn "
            f"({p.flagged} flagged, {p.failed} failed) of {p.total} in the book"
        )
