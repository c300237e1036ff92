"""Budgets, reserved atomically in the database before a paid call.

Each budget is one `cost_budgets` row holding what is spent or reserved against it. A
reservation is one conditional UPDATE per budget (`charged + cost <= limit`), the book's
first and the parent's day's second, in the transaction that writes the call's ledger row:
the database serialises them on the row, so any number of workers at any concurrency
cannot together reserve past a limit. Settling moves the row by the call's real cost.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from storywink.cost.prices import MICRO, usd
from storywink.db.models import CostBudget
from storywink.db.statements import execute
from storywink.providers.base import PermanentError


@dataclass(frozen=True)
class BudgetLimits:
    """US dollars; `book_usd` None: twice the book's expected cost; `user_daily_usd`
    None: no daily limit."""

    book_usd: float | None = None
    user_daily_usd: float | None = None


class BudgetExceeded(PermanentError):
    """The call would take a budget past its limit: it is not made, nor retried."""

    def __init__(self, budget: str, limit: int, charged: int, needed: int) -> None:
        super().__init__(
            f"budget: {budget} {usd(limit)} would be exceeded ({usd(charged)} spent or "
            f"reserved, this call needs about {usd(needed)})"
        )
        self.budget = budget


class BudgetMissing(Exception):
    """A budget's row does not exist yet (`ensure_budgets` creates it)."""


def book_scope(book_id: str) -> str:
    return f"book:{book_id}"


def user_day_scope(user_id: str, day: str) -> str:
    return f"user:{user_id}:{day}"


@dataclass(frozen=True)
class Reservation:
    scopes: tuple[str, ...]
    micro_usd: int


def ensure_budgets(session: Session, scopes: tuple[str, ...]) -> None:
    """Each budget's row, created at 0 if missing, committed on its own (so the
    reservation's transaction begins with its UPDATE: SQLite takes the write lock at once)."""
    for scope in scopes:
        if session.get(CostBudget, scope) is not None:
            continue
        session.add(CostBudget(scope=scope, charged_micro_usd=0))
        try:
            session.commit()
        except IntegrityError:  # another worker created it first
            session.rollback()
    session.commit()


def reserve(
    session: Session,
    amount: int,
    *,
    book: tuple[str, int],
    user_day: tuple[str, int | None],
) -> Reservation:
    """Reserve `amount` micro-dollars against the book's budget and the parent's day's
    (scope, limit in micro-dollars; None: unlimited); `BudgetExceeded` naming the first
    budget it would exceed, or `BudgetMissing` when a row is yet to be made
    (`ensure_budgets`), with the session rolled back. Does not commit."""
    for scope, limit in (book, user_day):
        if limit is None:
            taken = execute(session, _CHARGE, budget=scope, amount=amount)
        else:
            taken = execute(session, _CHARGE_WITHIN, budget=scope, amount=amount, limit=limit)
        if taken.rowcount != 1:
            row = session.get(CostBudget, scope, populate_existing=True)
            held = row.charged_micro_usd if row is not None else 0
            session.rollback()
            # Missing, or created by another worker after this UPDATE's snapshot (PostgreSQL
            # reads each statement's own): either way, not a refusal.
            if row is None or limit is None or held + amount <= limit:
                raise BudgetMissing(scope)
            label = (
                "book budget (BOOK_BUDGET_USD)"
                if scope == book[0]
                else "daily budget of the parent (USER_DAILY_BUDGET_USD)"
            )
            raise BudgetExceeded(label, limit, held, amount)
    return Reservation((book[0], user_day[0]), amount)


def adjust(session: Session, scopes: tuple[str, ...], delta: int) -> None:
    """Move each budget by `delta` micro-dollars (a settled call's cost minus its
    reservation). Does not commit."""
    if delta == 0:
        return
    for scope in scopes:
        execute(session, _CHARGE, budget=scope, amount=delta)


_CHARGE = (
    update(CostBudget)
    .where(CostBudget.scope == bindparam("budget"))
    .values(charged_micro_usd=CostBudget.charged_micro_usd + bindparam("amount"))
)
_CHARGE_WITHIN = _CHARGE.where(
    CostBudget.charged_micro_usd + bindparam("amount") <= bindparam("limit")
)


def charged(session: Session, scope: str) -> int:
    row = session.get(CostBudget, scope)
    return row.charged_micro_usd if row is not None else 0


def to_micro(dollars: float) -> int:
    return round(dollars * MICRO)
