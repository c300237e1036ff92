"""Settle pages that gave up for good, and settle the book once every page has."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity
from temporalio.client import Client

from activities.failures import book_step
from activities.fleet_check import WorkerFleet
from storywink.contract import BookOutcome, FinalizeInput, ModerationStatus, PageFailure, PageResult
from storywink.db.engine import in_session
from storywink.illustration import metrics
from storywink.illustration import records as books


class FinalizeActivities:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        temporal: Client | None = None,
        fleet: WorkerFleet | None = None,
    ) -> None:
        self._sessions = sessions
        self._temporal = temporal
        self._fleet = fleet

    async def _check_fleet(self) -> None:
        if self._fleet is not None and self._temporal is not None:
            await self._fleet.check_run(self._temporal)

    @activity.defn
    @book_step
    async def record_page_failure(self, failure: PageFailure) -> PageResult:
        await self._check_fleet()
        result = await in_session(
            self._sessions,
            books.record_page,
            failure.page_id,
            failure.run_id,
            ModerationStatus.FAILED,
            reason=failure.reason,
            redraw=failure.redraw,
        )
        metrics.page_settled(ModerationStatus.FAILED)  # its retries ran out
        return result

    @activity.defn
    @book_step
    async def finalize_book(self, request: FinalizeInput) -> BookOutcome:
        await self._check_fleet()
        outcome = await in_session(
            self._sessions,
            books.settle_book,
            request.book_id,
            request.run_id,
            settling_run_id=request.settling_run_id,
            cancelled=request.cancelled,
        )
        activity.logger.info(
            "book %s settled %s: %d/%d pages with an image, %d flagged, %d failed",
            outcome.book_id,
            outcome.status.value,
            outcome.pages_with_image,
            outcome.pages_total,
            outcome.pages_flagged,
            outcome.pages_failed,
        )
        return outcome
