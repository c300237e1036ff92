"""A redraw's book step: claim the book for the pages a parent asked to draw again."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity
from temporalio.client import Client

from activities.failures import book_step
from activities.fleet_check import WorkerFleet
from activities.prepare import page_options, page_task
from storywink.book.claims import claim_for_run
from storywink.config import Settings
from storywink.contract import RedrawClaimInput, RedrawOf, RedrawPlan
from storywink.db.models import Book
from storywink.illustration import redraws
from storywink.illustration.records import page_result
from storywink.illustration.styles import resolve_style


class RedrawActivities:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        temporal: Client,
        settings: Settings,
        fleet: WorkerFleet | None = None,
    ) -> None:
        self._sessions = sessions
        self._temporal = temporal
        self._settings = settings
        self._fleet = fleet

    @activity.defn
    @book_step
    async def claim_redraw(self, request: RedrawClaimInput) -> RedrawPlan:
        """Claim the book (or keep the claim this run holds) and plan the asked pages,
        each at its next version. A page the book lacks is refused, not the run."""
        if self._fleet is not None:
            await self._fleet.check_run(self._temporal)
        plan = await claim_for_run(
            self._sessions,
            self._temporal,
            redraws.REDRAW_RUN,
            request,
            lambda book, stale_run_id: self._plan(book, request, stale_run_id),
        )
        activity.logger.info(
            "book %s claimed to redraw pages %s%s",
            plan.book_id,
            ", ".join(str(page.page_number) for page in plan.pages) or "none",
            f" (refused: {'; '.join(plan.refused)})" if plan.refused else "",
        )
        return plan

    def _plan(self, book: Book, request: RedrawClaimInput, stale_run_id: str | None) -> RedrawPlan:
        style = resolve_style(book.art_style, self._settings.style_assets_url)
        fleet_id = self._fleet.fleet_id if self._fleet else None
        asked, refused = redraws.pages_asked(book, request.asks)
        pages = tuple(
            page_task(
                book, page, style, request.run_id, earlier_run_id=stale_run_id, fleet_id=fleet_id
            ).model_copy(
                update={
                    "redraw": RedrawOf(
                        version=redraws.next_version(page),
                        ask_id=ask.ask_id,
                        change_request=ask.note,
                    )
                }
            )
            for page, ask in asked
            if page.redraw_ask_id != ask.ask_id
        )
        return RedrawPlan(
            book_id=book.id,
            user_id=book.user_id,
            pages=pages,
            page_options=page_options(self._settings),
            refused=tuple(refused),
            recorded=tuple(
                page_result(page) for page, ask in asked if page.redraw_ask_id == ask.ask_id
            ),
        )
