"""The ledger of model calls: one row per call, written before it, completed after.

`open_call` writes the row, reserves the call's expected cost against the budgets and (for
an image call) counts it on the page, in one transaction keyed by the call's id: a repeat
after a commit whose answer was lost finds the row and changes nothing, so the count is
exact. `close_call` records the outcome and usage and settles the budgets with the cost.
A row never closed is a call cut off mid-way (a worker killed): it may have been billed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from storywink.cost import budgets
from storywink.cost.prices import Usage
from storywink.db.models import Book, ModelCall, Page

_RESERVE_TRIES: Final = 3


class CallKind(StrEnum):
    IMAGE = "image"
    STORY = "story"


class CallOutcome(StrEnum):
    ANSWERED = "answered"
    REFUSED = "refused"
    RATE_LIMITED = "429"
    SERVER_ERROR = "5xx"
    CLIENT_ERROR = "4xx"
    TIMEOUT = "timeout"
    CONNECTION_ERROR = "connection error"
    CANCELLED = "cancelled"
    ERROR = "error"


# Outcomes with no usage reported whose call may still have been billed.
MAYBE_BILLED: Final = frozenset(
    {CallOutcome.TIMEOUT, CallOutcome.CONNECTION_ERROR, CallOutcome.CANCELLED, CallOutcome.ERROR}
)
# Answers the API does not bill (Gemini bills no failed request).
NOT_BILLED: Final = frozenset(
    {CallOutcome.RATE_LIMITED, CallOutcome.SERVER_ERROR, CallOutcome.CLIENT_ERROR}
)


@dataclass(frozen=True)
class PlannedCall:
    """A call about to be made, and what the budgets allow it."""

    call_id: str
    kind: CallKind
    model: str
    book_id: str
    page_id: str | None
    run_id: str
    workflow_run_id: str
    attempt: int
    expected_micro_usd: int
    price_read_on: str | None
    book_limit: BookLimit
    user_daily_limit_micro_usd: int | None


@dataclass(frozen=True)
class BookLimit:
    """BOOK_BUDGET_USD (`fixed`), else twice the book's expected cost: each page's image
    and one story."""

    fixed: int | None
    per_page: int
    story: int

    def for_pages(self, pages: int) -> int:
        return self.fixed if self.fixed is not None else 2 * (pages * self.per_page + self.story)


def open_call(session: Session, call: PlannedCall) -> None:
    """Write the call's row, reserve its expected cost, count it on its page: all or
    nothing. `BudgetExceeded` (nothing written) when a budget cannot take it."""
    if session.get(ModelCall, call.call_id) is not None:
        session.rollback()
        return
    book = session.execute(
        select(Book.user_id, Book.page_length).where(Book.id == call.book_id)
    ).one_or_none()
    user_id, pages = (book.user_id, book.page_length) if book is not None else ("", 0)
    now = datetime.now(UTC)
    day = now.date().isoformat()
    book_scope = budgets.book_scope(call.book_id)
    user_scope = budgets.user_day_scope(user_id, day)
    session.commit()  # ends the read: the reservation's transaction begins with its UPDATE
    book_limit = (book_scope, call.book_limit.for_pages(pages))
    user_limit = (user_scope, call.user_daily_limit_micro_usd)
    for tries_left in range(_RESERVE_TRIES - 1, -1, -1):
        try:
            budgets.reserve(session, call.expected_micro_usd, book=book_limit, user_day=user_limit)
            break
        except budgets.BudgetMissing:  # the first call against one of them: create, again
            if not tries_left:
                raise
            budgets.ensure_budgets(session, (book_scope, user_scope))
    session.add(
        ModelCall(
            id=call.call_id,
            kind=call.kind.value,
            model=call.model,
            book_id=call.book_id,
            page_id=call.page_id,
            user_id=user_id,
            run_id=call.run_id,
            workflow_run_id=call.workflow_run_id,
            attempt=call.attempt,
            budget_day=day,
            started_at=now,
            price_read_on=call.price_read_on,
            expected_micro_usd=call.expected_micro_usd,
            reserved_micro_usd=call.expected_micro_usd,
        )
    )
    if call.page_id is not None:
        session.execute(
            update(Page).where(Page.id == call.page_id).values(model_calls=Page.model_calls + 1)
        )
        session.execute(
            update(Book).where(Book.id == call.book_id).values(image_count=Book.image_count + 1)
        )
    session.commit()


def close_call(
    session: Session,
    call_id: str,
    outcome: CallOutcome,
    usage: Usage | None,
    cost_micro_usd: int | None,
) -> None:
    """Record how the call ended and settle its budgets: with its cost when known, to 0
    when the API bills no such answer, else (may have been billed, or price unknown)
    keeping the reservation. A repeat changes nothing."""
    # An UPDATE first: SQLite takes its write lock at once, PostgreSQL locks the row.
    session.execute(
        update(ModelCall)
        .where(ModelCall.id == call_id)
        .values(attempt=ModelCall.attempt)
        .execution_options(synchronize_session=False)
    )
    row = session.get(ModelCall, call_id, populate_existing=True)
    if row is None or row.outcome is not None:
        session.rollback()
        return
    row.outcome = outcome.value
    row.ended_at = datetime.now(UTC)
    if usage is not None:
        row.prompt_tokens = usage.prompt_tokens
        row.output_text_tokens = usage.output_text
        row.output_image_tokens = usage.output_image
        row.thought_tokens = usage.thought_tokens
        row.total_tokens = usage.total_tokens
    if outcome in NOT_BILLED:
        cost_micro_usd = 0
    row.cost_micro_usd = cost_micro_usd
    settled = cost_micro_usd if cost_micro_usd is not None else row.reserved_micro_usd
    scopes = (budgets.book_scope(row.book_id), budgets.user_day_scope(row.user_id, row.budget_day))
    budgets.adjust(session, scopes, settled - row.reserved_micro_usd)
    row.reserved_micro_usd = settled
    if cost_micro_usd or usage is not None:  # in SQL: the book's other pages settle too
        session.execute(
            update(Book)
            .where(Book.id == row.book_id)
            .values(
                cost_micro_usd=Book.cost_micro_usd + (cost_micro_usd or 0),
                prompt_tokens=Book.prompt_tokens + (usage.prompt_tokens if usage else 0),
                output_tokens=Book.output_tokens
                + (usage.output_text + usage.output_image if usage else 0),
            )
        )
    session.commit()
