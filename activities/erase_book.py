"""The steps of an erasure run: stop the runs on the book, claim it, delete its assets,
delete its rows. Each is idempotent: a retry, a worker killed mid-step, a reset run all
leave the same state when the step runs again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Iterable

from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities.failures import REASON_LIMIT, book_step
from storywink import contract
from storywink.book.claims import describe_claim, is_running
from storywink.book.refusals import check_workflow_id_names
from storywink.db.engine import in_session
from storywink.erasure import records
from storywink.erasure.contract import (
    BOOK_ERASURE_WORKFLOW,
    BOOK_RUN_PREFIXES,
    ERASURE_WORKFLOW_ID_PREFIX,
    STOP_RUNS_GRACE,
    AssetsErased,
    ErasureClaim,
    ErasureStep,
    RowsErased,
    RunsStopped,
    book_asset_prefix,
)
from storywink.providers.base import ImageStore, PermanentError, ProviderError
from storywink.redact import shorten

ERASE_ASSETS_FAILED = "EraseAssetsFailed"
_POLL_SECONDS = 0.5
_TERMINATE_REASON = "the book is being erased (BookErasure)"


class ErasureActivities:
    def __init__(
        self, sessions: sessionmaker[Session], temporal: Client, store: ImageStore
    ) -> None:
        self._sessions = sessions
        self._temporal = temporal
        self._store = store

    @activity.defn
    @book_step
    async def stop_book_runs(self, step: ErasureStep) -> RunsStopped:
        """Cancel every other run working on the book and wait until each has closed; one
        still running after the grace period is terminated (its claim is then stale, and
        the erasure takes it over)."""
        check_workflow_id_names(step.book_id, step.workflow_id, ERASURE_WORKFLOW_ID_PREFIX)
        running = await self._runs_on(step)
        for workflow_id in running:
            activity.logger.info("book %s: cancelling workflow %s", step.book_id, workflow_id)
            await _ignoring_closed(self._temporal.get_workflow_handle(workflow_id).cancel())
        deadline = time.monotonic() + STOP_RUNS_GRACE.total_seconds()
        waiting, terminated = list(running), []
        while waiting:
            activity.heartbeat(len(waiting))
            if time.monotonic() > deadline:
                for workflow_id in waiting:
                    activity.logger.warning(
                        "book %s: workflow %s did not stop within %ds of its cancel; "
                        "terminating it",
                        step.book_id,
                        workflow_id,
                        STOP_RUNS_GRACE.total_seconds(),
                    )
                    handle = self._temporal.get_workflow_handle(workflow_id)
                    await _ignoring_closed(handle.terminate(reason=_TERMINATE_REASON))
                    terminated.append(workflow_id)
            await asyncio.sleep(_POLL_SECONDS)
            waiting = [w for w in waiting if await is_running(self._temporal, w)]
        return RunsStopped(workflow_ids=tuple(running), terminated=tuple(terminated))

    @activity.defn
    @book_step
    async def claim_erasure(self, step: ErasureStep) -> ErasureClaim:
        """Hold the book as `ERASING` for this run: from any status no running run holds
        it in (a claim whose run ended is taken over)."""
        held = await in_session(self._sessions, records.read_claim_if_any, step.book_id)
        if held is None:
            return ErasureClaim(found=False)
        claim, user_id = held
        stale_run_id = None
        if claim.status in records.HOLDING_STATUSES and claim.run_id != step.run_id:
            if claim.workflow_id and claim.run_id:
                holder = await describe_claim(self._temporal, claim.workflow_id, claim.run_id)
                if holder.running:
                    return ErasureClaim(
                        found=True, user_id=user_id, busy_workflow_id=claim.workflow_id
                    )
            stale_run_id = claim.run_id
        claimed = await in_session(
            self._sessions,
            records.claim_for_erasure,
            step.book_id,
            step.workflow_id,
            step.run_id,
            stale_run_id,
        )
        if claimed:
            activity.logger.info("book %s claimed for erasure", step.book_id)
        return ErasureClaim(found=True, claimed=claimed, user_id=user_id)

    @activity.defn
    @book_step
    async def erase_assets(self, step: ErasureStep) -> AssetsErased:
        """Delete every asset under the book's folder, of every delivery type. Only while
        this run holds the book, or once its row is gone (a sweep after the rows)."""
        await in_session(self._sessions, records.check_erasing, step.book_id, step.run_id)
        prefix = book_asset_prefix(step.book_id)
        try:
            async with _heartbeating():
                deleted = await self._store.delete_prefix(prefix)
        except PermanentError as error:
            raise _asset_failure(error, non_retryable=True) from None
        except ProviderError as error:  # transient, or a fleet fault an operator can fix
            raise _asset_failure(error, non_retryable=False) from None
        activity.logger.info(
            "book %s: %d assets deleted under %s (%s)",
            step.book_id,
            deleted,
            prefix,
            self._store.name,
        )
        return AssetsErased(deleted=deleted)

    @activity.defn
    @book_step
    async def erase_rows(self, step: ErasureStep) -> RowsErased:
        """Delete the book's rows last: drafts, notifications, pages, its budget, the book."""
        rows = await in_session(self._sessions, records.erase_rows, step.book_id, step.run_id)
        activity.logger.info("book %s: rows deleted: %s", step.book_id, rows.model_dump())
        return rows

    async def _runs_on(self, step: ErasureStep) -> list[str]:
        """The workflows other than this one with a running run on the book: the claim's,
        the book's own of each run kind, and any run tagged with its `BookId`."""
        candidates: list[str] = [prefix + step.book_id for prefix in BOOK_RUN_PREFIXES]
        held = await in_session(self._sessions, records.read_claim_if_any, step.book_id)
        if (
            held is not None
            and held[0].workflow_id
            and held[0].status is not (contract.BookStatus.ERASING)
        ):
            candidates.append(held[0].workflow_id)
        candidates.extend(await self._tagged_runs(step.book_id))
        running = []
        for workflow_id in _unique(candidates):
            if workflow_id != step.workflow_id and await is_running(self._temporal, workflow_id):
                running.append(workflow_id)
        return running

    async def _tagged_runs(self, book_id: str) -> list[str]:
        if not book_id.isascii() or any(c in book_id for c in "'\"\\"):
            return []
        query = (
            f"{contract.BOOK_ID_ATTRIBUTE.name}='{book_id}' AND ExecutionStatus='Running' "
            f"AND WorkflowType!='{BOOK_ERASURE_WORKFLOW}'"
        )
        try:
            return [execution.id async for execution in self._temporal.list_workflows(query)]
        except RPCError as error:  # a namespace without the attribute: the ids above suffice
            activity.logger.warning("listing the runs of book %s: %s", book_id, error.message)
            return []


async def _ignoring_closed(request: Awaitable[None]) -> None:
    """A cancel or terminate of a run that closed meanwhile is done already."""
    try:
        await request
    except RPCError as error:
        if error.status is not RPCStatusCode.NOT_FOUND:
            raise


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _asset_failure(error: ProviderError, *, non_retryable: bool) -> ApplicationError:
    return ApplicationError(
        shorten(f"erase assets: {error.reason}", REASON_LIMIT),
        type=ERASE_ASSETS_FAILED,
        non_retryable=non_retryable,
    )


@contextlib.asynccontextmanager
async def _heartbeating() -> AsyncIterator[None]:
    """Beat while the store deletes (a blocking SDK call in a thread), so a dead worker is
    noticed within the heartbeat timeout and another one deletes what is left."""
    timeout = activity.info().heartbeat_timeout
    interval = max(0.2, min(timeout.total_seconds() / 3, 10.0)) if timeout else 10.0

    async def beat() -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(interval)

    beating = asyncio.create_task(beat())
    try:
        yield
    finally:
        beating.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beating
