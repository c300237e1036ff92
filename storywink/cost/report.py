"""What the ledger says a book, a page, a parent, a model or a day cost.

Costs are summed from the rows as written when each call settled (a later price change
never rewrites them). A call whose cost is unknown (price unknown, or no usage reported)
is counted apart; a call cut off without an answer (timeout, connection cut, a worker
killed mid-call: its row never closed) is counted as "may have been billed", with the
expected cost it held in the budgets.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from storywink.book.records import get_book
from storywink.cost.prices import MICRO
from storywink.cost.records import MAYBE_BILLED, CallOutcome
from storywink.db.models import ModelCall


class CostGrouping(StrEnum):
    DAY = "day"
    USER = "user"
    MODEL = "model"
    BOOK = "book"


class CostLine(BaseModel):
    """The calls of one group and what they cost."""

    key: str
    calls: int = 0
    answered: int = 0
    cost_usd: float = 0.0  # calls of known cost
    unknown_cost_calls: int = 0
    maybe_billed_calls: int = 0
    maybe_billed_usd: float = 0.0  # what those calls may have cost (their expected cost)
    prompt_tokens: int = 0
    output_tokens: int = 0

    def add(self, row: ModelCall) -> None:
        self.calls += 1
        self.answered += row.outcome == CallOutcome.ANSWERED.value
        if maybe_billed(row):
            self.maybe_billed_calls += 1
            self.maybe_billed_usd += row.expected_micro_usd / MICRO
        elif row.cost_micro_usd is None:
            self.unknown_cost_calls += 1
        else:
            self.cost_usd += row.cost_micro_usd / MICRO
        self.prompt_tokens += row.prompt_tokens or 0
        self.output_tokens += (row.output_text_tokens or 0) + (row.output_image_tokens or 0)


class CostReport(BaseModel):
    since: datetime
    by: CostGrouping
    lines: list[CostLine]
    total: CostLine


class BookCost(BaseModel):
    """A book's cost: in total, for its story, and per page number."""

    book_id: str
    total: CostLine
    story: CostLine
    pages: dict[int, CostLine]


def maybe_billed(row: ModelCall) -> bool:
    """A call with no answer that may still have been billed: cut off, or never closed."""
    return row.outcome is None or row.outcome in MAYBE_BILLED


def costs_since(session: Session, since: datetime, by: CostGrouping) -> CostReport:
    rows = session.scalars(
        select(ModelCall).where(ModelCall.started_at >= since).order_by(ModelCall.started_at)
    ).all()
    lines: dict[str, CostLine] = {}
    for row in rows:
        key = _key(row, by)
        lines.setdefault(key, CostLine(key=key)).add(row)
    return CostReport(
        since=since,
        by=by,
        lines=sorted(lines.values(), key=lambda line: line.key),
        total=_total(rows),
    )


def cost_of_book(session: Session, book_id: str, page_numbers: dict[str, int]) -> BookCost:
    """`page_numbers`: page id -> its number (the book's pages)."""
    rows = session.scalars(select(ModelCall).where(ModelCall.book_id == book_id)).all()
    pages: dict[int, CostLine] = defaultdict(lambda: CostLine(key="page"))
    story = CostLine(key="story")
    for row in rows:
        if row.page_id is None:
            story.add(row)
        elif (number := page_numbers.get(row.page_id)) is not None:
            pages[number].key = f"page {number}"
            pages[number].add(row)
    return BookCost(book_id=book_id, total=_total(rows), story=story, pages=dict(pages))


def book_cost(session: Session, book_id: str) -> BookCost:
    """The book's cost from the ledger; `BookNotFound` for no such book."""
    book = get_book(session, book_id)
    return cost_of_book(session, book_id, {page.id: page.page_number for page in book.pages})


def _total(rows: Iterable[ModelCall]) -> CostLine:
    total = CostLine(key="total")
    for row in rows:
        total.add(row)
    return total


def _key(row: ModelCall, by: CostGrouping) -> str:
    if by is CostGrouping.DAY:
        return row.started_at.date().isoformat()
    if by is CostGrouping.USER:
        return row.user_id
    if by is CostGrouping.BOOK:
        return row.book_id
    return f"{row.model} ({row.kind})"


def money(dollars: float) -> str:
    return f"${dollars:.4f}"


def describe(line: CostLine) -> str:
    """`$0.2716, 4 calls` with the calls of unknown cost and the may-have-been-billed."""
    text = f"{money(line.cost_usd)}, {line.calls} call{'s' if line.calls != 1 else ''}"
    extra: list[str] = []
    if line.maybe_billed_calls:
        up_to = money(line.maybe_billed_usd)
        extra.append(f"{line.maybe_billed_calls} may have been billed (up to {up_to})")
    if line.unknown_cost_calls:
        extra.append(f"{line.unknown_cost_calls} of unknown cost")
    return f"{text} ({'; '.join(extra)})" if extra else text
