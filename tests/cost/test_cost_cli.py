"""`storywink status` and `storywink costs` show what the ledger holds: per page, per book,
by day, parent or model, with the calls that may have been billed counted apart."""

from __future__ import annotations

import json
from pathlib import Path

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
from storywink.db.engine import make_engine, make_session_factory
from tests.support.builders import new_book
from tests.support.commands import ensure_database, storywink

IMAGE = 67_885  # micro-dollars


def _book_with_calls(tmp_path: Path) -> str:
    """A 2-page book: page 1 answered, page 2 cut off (never closed), the story 429."""
    ensure_database(tmp_path)
    engine = make_engine(f"sqlite:///{tmp_path / 'storywink.db'}")
    sessions = make_session_factory(engine)
    with sessions() as session:
        book = new_book(
            session,
            ["file:///a.jpg", "file:///b.jpg"],
            status=BookStatus.PARTIAL,
            title="Mia's Day",
            user_id="parent-a",
        )
        book_id, page_ids = book.id, [page.id for page in book.pages]
    calls = [
        (CallKind.IMAGE, page_ids[0], CallOutcome.ANSWERED, IMAGE),
        (CallKind.IMAGE, page_ids[1], None, None),
        (CallKind.STORY, None, CallOutcome.RATE_LIMITED, None),
    ]
    for n, (kind, page_id, outcome, cost) in enumerate(calls):
        plan = PlannedCall(
            call_id=f"call-{book_id}-{n}",
            kind=kind,
            model="gemini-3.1-flash-image" if kind is CallKind.IMAGE else "gemini-3.5-flash-lite",
            book_id=book_id,
            page_id=page_id,
            run_id="run",
            workflow_run_id="run",
            attempt=1,
            expected_micro_usd=68_000,
            price_read_on="2026-12-04",
            book_limit=BookLimit(fixed=None, per_page=68_000, story=1_000),
            user_daily_limit_micro_usd=None,
        )
        with sessions() as session:
            open_call(session, plan)
        if outcome is not None:
            usage = Usage(input_text=1300, output_text=240, output_image=1120, thought_tokens=240)
            with sessions() as session:
                close_call(session, plan.call_id, outcome, usage, cost)
    engine.dispose()
    return book_id


def test_status_shows_each_pages_cost_and_the_books(tmp_path: Path) -> None:
    book_id = _book_with_calls(tmp_path)
    result = storywink(tmp_path, "status", book_id)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "[$0.0679, 1 call]" in lines[1]
    assert "[$0.0000, 1 call (1 may have been billed (up to $0.0680))]" in lines[2]
    assert lines[3] == "  story: $0.0000, 1 call"
    assert lines[4] == "  cost: $0.0679, 3 calls (1 may have been billed (up to $0.0680))"

    document = json.loads(storywink(tmp_path, "status", book_id, "--json").stdout)
    assert document["cost"]["total"]["cost_usd"] == IMAGE / 1e6
    assert document["cost"]["pages"]["2"]["maybe_billed_calls"] == 1


def test_costs_groups_by_model_user_and_day(tmp_path: Path) -> None:
    _book_with_calls(tmp_path)
    by_model = storywink(tmp_path, "costs", "--since", "1d", "--by", "model", "--json")
    assert by_model.returncode == 0, by_model.stderr
    report = json.loads(by_model.stdout)
    lines = {line["key"]: line for line in report["lines"]}
    assert lines["gemini-3.1-flash-image (image)"]["calls"] == 2
    assert lines["gemini-3.1-flash-image (image)"]["maybe_billed_calls"] == 1
    assert lines["gemini-3.5-flash-lite (story)"]["cost_usd"] == 0  # a 429 is not billed
    assert report["total"]["cost_usd"] == IMAGE / 1e6

    by_user = storywink(tmp_path, "costs", "--since", "7d", "--by", "user")
    assert by_user.returncode == 0, by_user.stderr
    assert "parent-a  $0.0679, 3 calls (1 may have been billed" in by_user.stdout
    by_day = storywink(tmp_path, "costs")
    assert "total" in by_day.stdout.splitlines()[-1]

    bad = storywink(tmp_path, "costs", "--since", "last week")
    assert bad.returncode == 2 and "give a span (7d, 12h, 30m)" in bad.stderr
