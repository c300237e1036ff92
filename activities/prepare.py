"""Prepare a run: check the book, claim it, choose the pages, resolve the style once."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity
from temporalio.client import Client

from activities.failures import book_step
from activities.fleet_check import WorkerFleet
from storywink.book.claims import claim_for_run
from storywink.config import Settings
from storywink.contract import (
    ActivityOptions,
    IllustrationPlan,
    PageTask,
    PrepareInput,
    StyleSnapshot,
)
from storywink.db.models import Book, Page
from storywink.illustration import records as books
from storywink.illustration.styles import resolve_style


class ClaimingActivities:
    """What a run kind's claim activity is given: the database, Temporal (to check the run
    holding a claim), the worker's settings and the fleet it serves."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        temporal: Client,
        settings: Settings,
        fleet: WorkerFleet | None = None,
    ) -> None:
        self._fleet = fleet
        self._sessions = sessions
        self._temporal = temporal
        self._settings = settings

    @property
    def _fleet_id(self) -> str | None:
        return self._fleet.fleet_id if self._fleet else None

    async def _check_fleet(self) -> None:
        """Leave a run prepared by another fleet's client to that fleet's workers."""
        if self._fleet is not None:
            await self._fleet.check_run(self._temporal)


class PrepareActivities(ClaimingActivities):
    @activity.defn
    @book_step
    async def prepare_illustration(self, request: PrepareInput) -> IllustrationPlan:
        await self._check_fleet()
        fleet_id = self._fleet_id
        plan = await claim_for_run(
            self._sessions,
            self._temporal,
            books.ILLUSTRATION_RUN,
            request,
            lambda book, stale_run_id: _plan(
                book, request.run_id, stale_run_id, self._settings, fleet_id
            ),
        )
        activity.logger.info(
            "book %s claimed: %d of %d pages to draw in style %s (%s)",
            plan.book_id,
            len(plan.pages),
            plan.total_pages,
            plan.style.key,
            plan.style.content_hash,
        )
        return plan


def page_options(s: Settings) -> ActivityOptions:
    return ActivityOptions(
        task_queue=s.temporal_illustration_task_queue,
        start_to_close_seconds=s.page_start_to_close_seconds,
        heartbeat_timeout_seconds=s.page_heartbeat_timeout_seconds,
        maximum_attempts=s.page_retry_attempts,
        # Timeouts retry this soon; the page's own errors set their backoff themselves
        # (activities.backoff), from page_retry_initial_seconds.
        initial_interval_seconds=s.page_timeout_retry_seconds,
        maximum_interval_seconds=s.page_retry_max_seconds,
    )


def _plan(
    book: Book, run_id: str, stale_run_id: str | None, settings: Settings, fleet_id: str | None
) -> IllustrationPlan:
    # The claim refused an unknown style before it claimed the book.
    style = resolve_style(book.art_style, settings.style_assets_url)
    return IllustrationPlan(
        book_id=book.id,
        user_id=book.user_id,
        book_title=book.title,
        style=style,
        total_pages=len(book.pages),
        pages=tuple(
            page_task(book, page, style, run_id, earlier_run_id=stale_run_id, fleet_id=fleet_id)
            for page in books.pages_to_draw(book)
        ),
        page_options=page_options(settings),
    )


def page_task(
    book: Book,
    page: Page,
    style: StyleSnapshot,
    run_id: str,
    *,
    earlier_run_id: str | None = None,
    fleet_id: str | None = None,
) -> PageTask:
    """What the page activity is handed for this page of the book (the tests build theirs
    with it too)."""
    return PageTask(
        book_id=book.id,
        book_title=book.title,
        page_id=page.id,
        page_number=page.page_number,
        is_title_page=page.is_title_page,
        # The photo by asset id: the page activity signs it when it fetches it.
        original_image_url=page.original_image_url if not page.original_asset_id else None,
        original_asset_id=page.original_asset_id,
        asset_salt=book.asset_salt,
        text=page.text,
        illustration_notes=page.illustration_notes,
        style=style,
        run_id=run_id,
        earlier_run_id=earlier_run_id,
        fleet_id=fleet_id,
    )
