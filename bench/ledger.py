"""The ledger's cost per model call: writing a call's row with its budget reservation and
page count before the call, and completing it after (storywink.cost.records), on SQLite
and PostgreSQL, one call at a time and 30 at once (3 workers x concurrency 10, all on
one book's budget row: the contended case).

Compare with the per-page time of `throughput` in the same run: the ledger is two short
transactions per page.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import psycopg
from temporalio.client import Client

from bench.report import BenchResult, Cell, Column
from storywink.contract import BookStatus
from storywink.cost.prices import Usage
from storywink.cost.records import (
    BookLimit,
    CallKind,
    CallOutcome,
    PlannedCall,
    close_call,
    open_call,
)
from storywink.db.engine import in_session, make_engine, make_session_factory, upgrade_to_head
from storywink.illustration import records as books
from tests.support.builders import new_book

CALLS = 300
QUICK_CALLS = 60
AT_ONCE = 30
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
USAGE = Usage(input_text=1300, output_text=240, output_image=1120, thought_tokens=240)


async def run(client: Client, quick: bool) -> BenchResult:
    del client  # no Temporal: the database alone
    calls = QUICK_CALLS if quick else CALLS
    result = BenchResult(
        name="ledger",
        title="The ledger's cost per model call (row + reservation before, completion after)",
        columns=[
            Column("database", "database"),
            Column("what", "what"),
            Column("at_once", "at once"),
            Column("calls", "calls"),
            Column("ms_per_call", "ms / call", ".2f"),
            Column("calls_per_second", "calls / s", ".0f"),
        ],
        parameters={"calls": calls, "at_once": AT_ONCE},
        notes=["ms / call: wall time of open + close divided by the calls (at once: overlapped)"],
    )
    for name, url in databases():
        with url as database_url:
            for at_once in (1, AT_ONCE):
                seconds = await _measure(database_url, calls, at_once, ledger=False)
                result.rows.append(_row(name, "count only (before)", at_once, calls, seconds))
                seconds = await _measure(database_url, calls, at_once, ledger=True)
                result.rows.append(_row(name, "ledger", at_once, calls, seconds))
    return result


def databases() -> Iterator[tuple[str, AbstractContextManager[str]]]:
    yield "sqlite", _sqlite()
    yield "postgresql", _postgresql()


@contextmanager
def _sqlite() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="bench-ledger-") as directory:
        yield f"sqlite:///{Path(directory) / 'storywink.db'}"


@contextmanager
def _postgresql() -> Iterator[str]:
    name = f"bench_ledger_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _measure(url: str, calls: int, at_once: int, *, ledger: bool) -> float:
    """Seconds for `calls` calls' database work: the ledger's open and close, or (before
    the ledger) the page's one count of the call."""
    engine = make_engine(url)
    upgrade_to_head(engine)
    sessions = make_session_factory(engine)
    with sessions() as session:
        book = new_book(
            session,
            ["file:///photo.jpg"],
            status=BookStatus.ILLUSTRATING,
            title="Bench",
            user_id="bench",
        )
        book_id, page_id = book.id, book.pages[0].id
    plans = [
        PlannedCall(
            call_id=uuid.uuid4().hex,
            kind=CallKind.IMAGE,
            model="gemini-3.1-flash-image",
            book_id=book_id,
            page_id=page_id,
            run_id="bench",
            workflow_run_id="bench",
            attempt=1,
            expected_micro_usd=67_984,
            price_read_on="2026-12-04",
            book_limit=BookLimit(fixed=10**12, per_page=0, story=0),
            user_daily_limit_micro_usd=None,
        )
        for _ in range(calls)
    ]
    gate = asyncio.Semaphore(at_once)

    async def one(plan: PlannedCall) -> None:
        async with gate:
            if not ledger:
                await in_session(sessions, books.count_model_call, page_id)
                return
            await in_session(sessions, open_call, plan)
            await in_session(
                sessions, close_call, plan.call_id, CallOutcome.ANSWERED, USAGE, 67_885
            )

    started = time.monotonic()
    await asyncio.gather(*(one(plan) for plan in plans))
    seconds = time.monotonic() - started
    engine.dispose()
    return seconds


def _row(database: str, what: str, at_once: int, calls: int, seconds: float) -> dict[str, Cell]:
    return {
        "database": database,
        "what": what,
        "at_once": at_once,
        "calls": calls,
        "ms_per_call": round(seconds / calls * 1000, 3),
        "calls_per_second": round(calls / seconds, 1),
    }
