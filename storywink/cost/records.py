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

from sqlalchemy import bindparam, exists, insert, select, update
from sqlalchemy.orm import Session

from storywink.cost import budgets
from storywink.cost.prices import Usage
from storywink.db.models import Book, ModelCall, Page
from storywink.db.statements import execute

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
    known = execute(session, _CALL_AND_BOOK, call_id=call.call_id, book_id=call.book_id).one()
    if known.written:
        session.rollback()
        return
    user_id, pages = known.user_id or "", known.pages or 0
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
    execute(
        session,
        _WRITE_CALL,
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
    if call.page_id is not None:
        count_image_calls(session, call.page_id, call.book_id, 1)
    session.commit()


def count_image_calls(session: Session, page_id: str, book_id: str, calls: int) -> None:
    """Count image calls on their page and its book (in SQL: the book's other pages count
    at the same time). Does not commit."""
    execute(session, _COUNT_ON_PAGE, page_key=page_id, calls=calls)
    execute(session, _COUNT_ON_BOOK, book_key=book_id, calls=calls)


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
    row = execute(session, _OPEN_CALL, call_key=call_id).one_or_none()
    if row is None:  # no such call, or already closed
        session.rollback()
        return
    if outcome in NOT_BILLED:
        cost_micro_usd = 0
    settled = cost_micro_usd if cost_micro_usd is not None else row.reserved_micro_usd
    # The UPDATE takes the write lock (SQLite) or the row's (PostgreSQL); its guard makes a
    # repeat that read the row before another closed it change nothing.
    closed = execute(
        session,
        _CLOSE_CALL,
        call_key=call_id,
        outcome=outcome.value,
        ended_at=datetime.now(UTC),
        prompt_tokens=usage.prompt_tokens if usage else None,
        output_text_tokens=usage.output_text if usage else None,
        output_image_tokens=usage.output_image if usage else None,
        thought_tokens=usage.thought_tokens if usage else None,
        total_tokens=usage.total_tokens if usage else None,
        cost_micro_usd=cost_micro_usd,
        reserved_micro_usd=settled,
    )
    if closed.rowcount != 1:
        session.rollback()
        return
    scopes = (budgets.book_scope(row.book_id), budgets.user_day_scope(row.user_id, row.budget_day))
    budgets.adjust(session, scopes, settled - row.reserved_micro_usd)
    if cost_micro_usd or usage is not None:  # in SQL: the book's other pages settle too
        execute(
            session,
            _BOOK_SPEND,
            book_key=row.book_id,
            cost=cost_micro_usd or 0,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            output_tokens=usage.output_text + usage.output_image if usage else 0,
        )
    session.commit()


# The statements of every model call (storywink.db.statements: built once, run on the
# session's connection).
_THE_BOOK = Book.id == bindparam("book_id")
_CALL_AND_BOOK = select(
    exists().where(ModelCall.id == bindparam("call_id")).label("written"),
    select(Book.user_id).where(_THE_BOOK).scalar_subquery().label("user_id"),
    select(Book.page_length).where(_THE_BOOK).scalar_subquery().label("pages"),
)
_WRITE_CALL = insert(ModelCall)
_COUNT_ON_PAGE = (
    update(Page)
    .where(Page.id == bindparam("page_key"))
    .values(model_calls=Page.model_calls + bindparam("calls"))
)
_COUNT_ON_BOOK = (
    update(Book)
    .where(Book.id == bindparam("book_key"))
    .values(image_count=Book.image_count + bindparam("calls"))
)
_OPEN_CALL = select(
    ModelCall.book_id, ModelCall.user_id, ModelCall.budget_day, ModelCall.reserved_micro_usd
).where(ModelCall.id == bindparam("call_key"), ModelCall.outcome.is_(None))
_CLOSE_CALL = update(ModelCall).where(
    ModelCall.id == bindparam("call_key"), ModelCall.outcome.is_(None)
)
_BOOK_SPEND = (
    update(Book)
    .where(Book.id == bindparam("book_key"))
    .values(
        cost_micro_usd=Book.cost_micro_usd + bindparam("cost"),
        prompt_tokens=Book.prompt_tokens + bindparam("prompt_tokens"),
        output_tokens=Book.output_tokens + bindparam("output_tokens"),
    )
)
