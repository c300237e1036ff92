"""A paid call made through the ledger: its row and reservation first, its outcome after.

Used by the page and story activities around their one model call each.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, TypeVar

from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity

from storywink.cost import metrics
from storywink.cost.budgets import BudgetExceeded, BudgetLimits, to_micro
from storywink.cost.prices import (
    CallPrice,
    PriceBook,
    Usage,
    billed_usage,
    expected_image_usage,
    expected_story_usage,
)
from storywink.cost.records import (
    MAYBE_BILLED,
    BookLimit,
    CallKind,
    CallOutcome,
    PlannedCall,
    close_call,
    open_call,
)
from storywink.db.engine import in_session
from storywink.providers.base import (
    ContentRefused,
    PermanentError,
    ProviderError,
    RateLimited,
    TokenUsage,
)

T = TypeVar("T")
log = logging.getLogger("storywink.cost")
# The row is written again with the same id when its commit's answer is lost.
OPEN_TRIES: Final = 3
OPEN_RETRY_SECONDS: Final = 0.5


class UnclosedCall(BaseModel):
    """A call's ending the database could not take when the call ended: carried (in a
    page's heartbeat details) until it can, so a call answered during an outage is still
    priced, not left "may have been billed"."""

    call_id: str
    outcome: CallOutcome
    usage: Usage | None = None
    cost_micro_usd: int | None = None

    async def close(self, sessions: sessionmaker[Session]) -> None:
        await in_session(
            sessions, close_call, self.call_id, self.outcome, self.usage, self.cost_micro_usd
        )


@dataclass(frozen=True)
class ModelChoice:
    """The models a worker calls, as the ledger names and prices them."""

    image_model: str = "local"
    image_size: str = "1K"
    text_model: str = "offline"


class CallMeter:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        models: ModelChoice | None = None,
        prices: PriceBook | None = None,
        limits: BudgetLimits | None = None,
    ) -> None:
        self._sessions = sessions
        self._models = models or ModelChoice()
        self._prices = prices or PriceBook()
        self._limits = limits or BudgetLimits()

    def expected_page_micro_usd(self, on: datetime) -> int:
        price = self._prices.price(self._models.image_model, on.date())
        usage = expected_image_usage(self._models.image_model, self._models.image_size)
        return price.micro_usd(usage)

    def expected_story_micro_usd(self, pages: int, on: datetime) -> int:
        price = self._prices.price(self._models.text_model, on.date())
        return price.micro_usd(expected_story_usage(pages))

    async def image_call(
        self,
        *,
        book_id: str,
        page_id: str,
        run_id: str,
        call: Callable[[], Awaitable[T]],
        unclosed: Callable[[UnclosedCall], None] | None = None,
    ) -> T:
        """`call()`, made only once its row is written and its cost reserved; `unclosed`
        is given the call's ending if the database cannot take it now."""
        model = self._models.image_model
        usage = expected_image_usage(model, self._models.image_size)
        return await self._metered(
            CallKind.IMAGE, model, usage, book_id, page_id, run_id, call, unclosed
        )

    async def story_call(
        self, *, book_id: str, run_id: str, pages: int, call: Callable[[], Awaitable[T]]
    ) -> T:
        model = self._models.text_model
        usage = expected_story_usage(pages)
        return await self._metered(CallKind.STORY, model, usage, book_id, None, run_id, call)

    async def _metered(
        self,
        kind: CallKind,
        model: str,
        expected: Usage,
        book_id: str,
        page_id: str | None,
        run_id: str,
        call: Callable[[], Awaitable[T]],
        unclosed: Callable[[UnclosedCall], None] | None = None,
    ) -> T:
        now = datetime.now(UTC)
        price = self._prices.price(model, now.date())
        plan = PlannedCall(
            call_id=_call_id(),
            kind=kind,
            model=model,
            book_id=book_id,
            page_id=page_id,
            run_id=run_id,
            workflow_run_id=activity.info().workflow_run_id or "",
            attempt=activity.info().attempt,
            expected_micro_usd=price.micro_usd(expected),
            price_read_on=price.prices.read_on.isoformat() if price.known else None,
            book_limit=self._book_limit(now),
            user_daily_limit_micro_usd=(
                to_micro(self._limits.user_daily_usd)
                if self._limits.user_daily_usd is not None
                else None
            ),
        )
        await self._open(plan)
        try:
            result = await call()
        except BaseException as exc:
            ending = _outcome_of(exc)
            await self._close(plan, price, ending, getattr(exc, "usage", None), unclosed)
            raise
        await self._close(plan, price, CallOutcome.ANSWERED, _usage_of(result), unclosed)
        return result

    def _book_limit(self, now: datetime) -> BookLimit:
        fixed = self._limits.book_usd
        story_fixed = self.expected_story_micro_usd(0, now)
        story_per_page = self.expected_story_micro_usd(1, now) - story_fixed
        return BookLimit(
            fixed=to_micro(fixed) if fixed is not None else None,
            per_page=self.expected_page_micro_usd(now) + story_per_page,
            story=story_fixed,
        )

    async def _open(self, plan: PlannedCall) -> None:
        for tries_left in range(OPEN_TRIES - 1, -1, -1):
            try:
                await in_session(self._sessions, open_call, plan)
                return
            except BudgetExceeded as refused:
                metrics.budget_refused(refused.budget)
                raise
            except SQLAlchemyError:
                if not tries_left:
                    raise
                await asyncio.sleep(OPEN_RETRY_SECONDS)

    async def _close(
        self,
        plan: PlannedCall,
        price: CallPrice,
        outcome: CallOutcome,
        reported: TokenUsage | None,
        unclosed: Callable[[UnclosedCall], None] | None,
    ) -> None:
        image_call = plan.kind is CallKind.IMAGE
        usage = billed_usage(reported, image_call=image_call) if reported is not None else None
        cost = price.micro_usd(usage) if usage is not None and price.known else None
        if price.free:  # the offline providers report no usage and cost nothing
            cost = 0
        ending = UnclosedCall(
            call_id=plan.call_id, outcome=outcome, usage=usage, cost_micro_usd=cost
        )
        try:
            # Shielded: a cancel that cut the call off must not also lose its record.
            await asyncio.shield(ending.close(self._sessions))
        except Exception as exc:
            log.warning(
                "model call %s: ending not in the ledger yet (%s)", plan.call_id, type(exc).__name__
            )
            if unclosed is not None:
                unclosed(ending)
        if not price.free and (
            outcome in MAYBE_BILLED or (usage is None and outcome is CallOutcome.ANSWERED)
        ):
            metrics.maybe_billed(plan.model, plan.kind.value)
        metrics.call_settled(plan.model, plan.kind.value, cost, usage)


def _call_id() -> str:
    """One id per activity attempt (each attempt makes at most one model call)."""
    info = activity.info()
    key = f"{info.workflow_id}|{info.workflow_run_id}|{info.activity_id}|{info.attempt}"
    return hashlib.sha256(key.encode()).hexdigest()[:40]


def _usage_of(result: object) -> TokenUsage | None:
    usage = getattr(result, "usage", None)
    return usage if isinstance(usage, TokenUsage) else None


def _outcome_of(exc: BaseException) -> CallOutcome:
    """How a call that raised ended. The reasons are the Gemini provider's own
    (storywink.providers.gemini: "timeout", "connection error: …", "HTTP 503 …")."""
    if isinstance(exc, asyncio.CancelledError):
        return CallOutcome.CANCELLED
    if isinstance(exc, RateLimited):
        return CallOutcome.RATE_LIMITED
    if isinstance(exc, ContentRefused):
        return CallOutcome.REFUSED
    if not isinstance(exc, ProviderError):
        return CallOutcome.ERROR
    if exc.reason.startswith("HTTP 5"):
        return CallOutcome.SERVER_ERROR
    if exc.reason.startswith("HTTP ") or isinstance(exc, PermanentError):
        return CallOutcome.CLIENT_ERROR
    if exc.reason == "timeout":
        return CallOutcome.TIMEOUT
    if exc.reason.startswith("connection error"):
        return CallOutcome.CONNECTION_ERROR
    return CallOutcome.ANSWERED  # an answer we could not use ("empty response", …): billed
