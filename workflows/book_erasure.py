"""The `BookErasure` workflow: stop the runs on a book, claim it, delete its assets, then
its rows, then sweep its folder once more.

Only orchestration lives here; every side effect is an idempotent activity. A run killed,
reset or retried at any point goes on where it was: each step repeated deletes nothing
more. Its history holds ids and counts only (docs/erasure.md).
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.erase_book import ErasureActivities
    from storywink import contract
    from storywink.erasure.contract import (
        BOOK_ERASURE_WORKFLOW,
        ERASE_ASSETS_HEARTBEAT,
        ERASE_ASSETS_SCHEDULE_TO_CLOSE,
        ERASE_ASSETS_TIMEOUT,
        ERASURE_STEP_RETRY,
        MAX_CLAIM_ROUNDS,
        STOP_RUNS_HEARTBEAT,
        STOP_RUNS_TIMEOUT,
        AssetsErased,
        ErasureClaim,
        ErasureOutcome,
        ErasureRequest,
        ErasureStep,
        RunsStopped,
    )
    from workflows.common import book_step, request_from


@workflow.defn(name=BOOK_ERASURE_WORKFLOW)
class BookErasure:
    # `*inputs`, as in BookIllustration: a bad start fails the run with a clear message.
    @workflow.run
    async def run(self, *inputs: object) -> ErasureOutcome:
        request = request_from(ErasureRequest, BOOK_ERASURE_WORKFLOW, inputs)
        workflow.upsert_search_attributes([contract.BOOK_ID_ATTRIBUTE.value_set(request.book_id)])
        info = workflow.info()
        # The chain, kept by a reset: a reset run still holds the book it claimed.
        step = ErasureStep(
            book_id=request.book_id,
            workflow_id=info.workflow_id,
            run_id=info.first_execution_run_id,
        )
        self._details("stopping the runs on the book")
        stopped, claim = await self._claim(step)
        if claim.user_id:
            workflow.upsert_search_attributes([contract.USER_ID_ATTRIBUTE.value_set(claim.user_id)])
        self._details("deleting the assets")
        assets = await self._erase_assets(step)
        rows = None
        if claim.found:
            self._details("deleting the rows")
            rows = await book_step(ErasureActivities.erase_rows, step)
            # An upload of a run stopped mid-page may have landed after the first pass.
            swept = await self._erase_assets(step)
            assets = AssetsErased(deleted=assets.deleted + swept.deleted)
        self._details("erased" if claim.found else "no such book; its folder swept")
        outcome = ErasureOutcome(
            book_id=request.book_id,
            found=claim.found,
            stopped_workflow_ids=stopped,
            assets_deleted=assets.deleted,
        )
        return outcome if rows is None else outcome.model_copy(update={"rows": rows})

    async def _claim(self, step: ErasureStep) -> tuple[tuple[str, ...], ErasureClaim]:
        """Stop the runs on the book and claim it; again if a run got in between."""
        stopped: tuple[str, ...] = ()
        for _ in range(MAX_CLAIM_ROUNDS):
            runs: RunsStopped = await workflow.execute_activity_method(
                ErasureActivities.stop_book_runs,
                step,
                start_to_close_timeout=STOP_RUNS_TIMEOUT,
                heartbeat_timeout=STOP_RUNS_HEARTBEAT,
                schedule_to_close_timeout=contract.BOOK_ACTIVITY_SCHEDULE_TO_CLOSE,
                retry_policy=ERASURE_STEP_RETRY,
            )
            stopped += tuple(w for w in runs.workflow_ids if w not in stopped)
            claim = await book_step(ErasureActivities.claim_erasure, step)
            if claim.claimed or not claim.found:
                return stopped, claim
        raise ApplicationError(
            f"book {step.book_id} is still held by workflow {claim.busy_workflow_id} after "
            f"{MAX_CLAIM_ROUNDS} rounds of stopping its runs",
            type=contract.BOOK_BUSY,
            non_retryable=True,
        )

    async def _erase_assets(self, step: ErasureStep) -> AssetsErased:
        return await workflow.execute_activity_method(
            ErasureActivities.erase_assets,
            step,
            start_to_close_timeout=ERASE_ASSETS_TIMEOUT,
            heartbeat_timeout=ERASE_ASSETS_HEARTBEAT,
            schedule_to_close_timeout=ERASE_ASSETS_SCHEDULE_TO_CLOSE,
            retry_policy=ERASURE_STEP_RETRY,
        )

    def _details(self, phase: str) -> None:
        workflow.set_current_details(f"**{phase}**")
