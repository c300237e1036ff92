"""The page's database path alone: the CPU a page's five transactions cost, step by step.

One page after another (no contention), on SQLite and PostgreSQL, the functions a page's
activity runs (activities/illustrate_page.py), each in its own session as `in_session`
gives it: the settled-page check; the ledger's row, reservation and count before the model
call; its completion after; the draft kept (the generated image, DRAFT_BYTES); the page
recorded. CPU is this process's user + system time, the database server's apart (for
PostgreSQL, its own processes are not counted).
"""

from __future__ import annotations

import os
import resource
import time
import uuid
from collections.abc import Callable
from typing import Any

from temporalio.client import Client

from bench.ledger import USAGE, databases
from bench.report import BenchResult, Cell, Column
from storywink.contract import BookStatus, ModerationStatus
from storywink.cost.records import (
    BookLimit,
    CallKind,
    CallOutcome,
    PlannedCall,
    close_call,
    open_call,
)
from storywink.db.engine import make_engine, make_session_factory, upgrade_to_head
from storywink.db.models import Book
from storywink.illustration import records as books
from tests.support.builders import new_book

PAGES = 300
QUICK_PAGES = 60
DRAFT_BYTES = 200_000
RUN = "bench-run"
STEPS = ("settled check", "ledger open", "ledger close", "draft kept", "page recorded")


async def run(client: Client, quick: bool) -> BenchResult:
    del client  # no Temporal: the database alone
    pages = QUICK_PAGES if quick else PAGES
    result = BenchResult(
        name="page_db",
        title="The page's database path: CPU per page, one page at a time",
        columns=[
            Column("database", "database"),
            Column("cpu_ms_per_page", "CPU ms / page", ".2f"),
            Column("wall_ms_per_page", "wall ms / page", ".2f"),
            *(Column(_key(step), f"{step} (ms)", ".2f") for step in STEPS),
        ],
        parameters={"pages": pages, "draft_bytes": DRAFT_BYTES},
        notes=["CPU: this process's user + system seconds; the database server's not counted"],
    )
    for name, url in databases():
        with url as database_url:
            result.rows.append({"database": name, **_measure(database_url, pages)})
    return result


def _measure(url: str, pages: int) -> dict[str, Cell]:
    engine = make_engine(url)
    upgrade_to_head(engine)
    sessions = make_session_factory(engine)
    with sessions() as session:
        book = new_book(
            session, ["file:///photo.jpg"] * pages, status=BookStatus.ILLUSTRATING, user_id="b"
        )
        session.get_one(Book, book.id).claim_run_id = RUN
        session.commit()
        book_id, page_ids = book.id, [page.id for page in book.pages]
    spent = dict.fromkeys(STEPS, 0.0)

    def step(name: str, work: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        before = _cpu()
        with sessions() as session:
            work(session, *args, **kwargs)
        spent[name] += _cpu() - before

    image = os.urandom(DRAFT_BYTES)
    wall, cpu = _wall(), _cpu()
    for page_id in page_ids:
        plan = _plan(book_id, page_id)
        step("settled check", books.settled_result, page_id, RUN)
        step("ledger open", open_call, plan)
        step("ledger close", close_call, plan.call_id, CallOutcome.ANSWERED, USAGE, 67_885)
        step("draft kept", books.save_draft, page_id, RUN, image, "image/png")
        step("page recorded", books.record_page, page_id, RUN, ModerationStatus.OK, image_ref="a")
    cpu, wall = _cpu() - cpu, _wall() - wall
    engine.dispose()
    return {
        "cpu_ms_per_page": round(cpu / pages * 1000, 3),
        "wall_ms_per_page": round(wall / pages * 1000, 3),
        **{_key(name): round(seconds / pages * 1000, 3) for name, seconds in spent.items()},
    }


def _plan(book_id: str, page_id: str) -> PlannedCall:
    return PlannedCall(
        call_id=uuid.uuid4().hex,
        kind=CallKind.IMAGE,
        model="gemini-3.1-flash-image",
        book_id=book_id,
        page_id=page_id,
        run_id=RUN,
        workflow_run_id=RUN,
        attempt=1,
        expected_micro_usd=67_984,
        price_read_on="2026-12-04",
        book_limit=BookLimit(fixed=10**12, per_page=0, story=0),
        user_daily_limit_micro_usd=None,
    )


def _key(step: str) -> str:
    return step.replace(" ", "_") + "_ms"


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _wall() -> float:
    return time.monotonic()
