"""What every book cost, and budgets no fleet of workers can overspend (docs/costs.md).

Through the real workflow and worker, google-genai against the fake Gemini (which answers
with `usageMetadata` as the real API does today), on SQLite and PostgreSQL where the
database decides (the reservation's atomicity).
"""

from __future__ import annotations

import asyncio
import signal
from contextlib import AsyncExitStack
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from storywink.config import Settings
from storywink.contract import BookStatus, ModerationStatus
from storywink.cost.meter import CallMeter, ModelChoice
from storywink.cost.metrics import MODEL_COST, MODEL_TOKENS
from storywink.cost.report import CostGrouping, book_cost, costs_since
from storywink.db.connection import Database
from storywink.db.models import CostBudget, ModelCall
from storywink.providers.gemini_models import CATALOG, DEFAULT_IMAGE_MODEL
from storywink.temporal.connection import connect_temporal
from tests.support.fakes.cloudinary_server import CloudFault
from tests.support.fakes.gemini_server import Fault, RecordedRequest
from tests.support.helpers import wait_until
from tests.support.pipeline import Pipeline
from tests.support.provider_fakes import Fakes
from tests.support.worker_processes import free_port, wait_until_ready, worker_processes

PRICES = CATALOG[DEFAULT_IMAGE_MODEL].prices
assert PRICES is not None and PRICES.output_image is not None


def priced(usage: dict[str, Any]) -> int:
    """Micro-dollars of one answer by the table's prices, from its usageMetadata alone."""
    assert PRICES is not None
    by_modality = {d["modality"]: d["tokenCount"] for d in usage["candidatesTokensDetails"]}
    dollars = (
        usage["promptTokenCount"] * (PRICES.input_text or 0)
        + (usage.get("thoughtsTokenCount", 0) + by_modality.get("TEXT", 0))
        * (PRICES.output_text or 0)
        + by_modality.get("IMAGE", 0) * (PRICES.output_image or 0)
    )
    return round(float(dollars))


def answered(fakes: Fakes, marker: str = "") -> list[RecordedRequest]:
    return [r for r in fakes.gemini.requests if r.usage is not None and marker in r.prompt]


def ledger(database: Database, book_id: str) -> list[ModelCall]:
    with database.sessions() as session:
        return list(session.scalars(select(ModelCall).where(ModelCall.book_id == book_id)))


def one_image(settings: Settings) -> int:
    """What the worker expects one page's image to cost, in micro-dollars."""
    meter = CallMeter(
        None,  # type: ignore[arg-type]  # pricing reads no database
        ModelChoice(settings.gemini_image_model, settings.gemini_image_size),
    )
    expected: int = meter.expected_page_micro_usd(datetime.now(UTC))
    return expected


@pytest.mark.each_database
async def test_a_books_recorded_cost_is_its_answered_calls_times_the_price(
    fake_pipeline: Pipeline, fakes: Fakes
) -> None:
    """One page answered at once, one after a 503, one after a 429, one refused (billed
    for what it used): one ledger row per call the fake saw, each closed with its outcome,
    and the book's cost the sum of the fake's answers priced by the table."""
    pipeline = fake_pipeline.with_settings(page_retry_attempts=3)
    fakes.gemini.fail_when("Page 2 of", Fault.http(503, "overloaded"), times=1)
    fakes.gemini.fail_when("Page 3 of", Fault.rate_limited("0.1s"), times=1)
    fakes.gemini.fail_when("Page 4 of", Fault.blocked("SAFETY"), times=1)
    book_id = pipeline.book(4, photos="cost")

    outcome = await pipeline.illustrate(book_id)

    assert outcome.status is BookStatus.PARTIAL  # page 4 FLAGGED
    rows = ledger(pipeline.database, book_id)
    assert len(rows) == fakes.gemini.call_count == 6
    assert sorted(row.outcome or "open" for row in rows) == sorted(
        ["answered"] * 3 + ["5xx", "429", "refused"]
    )
    expected = sum(priced(r.usage or {}) for r in answered(fakes))
    assert expected > 0 and len(answered(fakes)) == 4  # 3 images and the refusal
    assert sum(row.cost_micro_usd or 0 for row in rows) == expected
    with pipeline.database.sessions() as session:
        cost = book_cost(session, book_id)
        budget = session.get(CostBudget, f"book:{book_id}")
    assert round(cost.total.cost_usd * 1e6) == expected
    assert cost.total.maybe_billed_calls == cost.total.unknown_cost_calls == 0
    image = priced(answered(fakes, "Page 2 of")[0].usage or {})
    for number in (1, 2, 3):  # one image's price each, whatever went wrong before
        assert round(cost.pages[number].cost_usd * 1e6) == image
        assert cost.pages[number].answered == 1
    assert budget is not None and budget.charged_micro_usd == expected  # settled, not held
    book, _, _ = pipeline.load(book_id)
    assert book.cost_micro_usd == expected
    assert outcome.cost_usd is not None and round(outcome.cost_usd * 1e6) == expected


async def _illustrate_on_workers(
    pipeline: Pipeline, book_ids: list[str], workers: int
) -> list[BookStatus]:
    async with AsyncExitStack() as stack:
        for _ in range(workers):  # each its own connection, as a worker elsewhere has
            own = await connect_temporal(pipeline.settings)
            await stack.enter_async_context(replace(pipeline, client=own).worker())
        handles = [await pipeline.start(book_id) for book_id in book_ids]
        outcomes = await asyncio.wait_for(
            asyncio.gather(*(handle.result() for handle in handles)), timeout=90
        )
    return [outcome.status for outcome in outcomes]


@pytest.mark.each_database
async def test_a_book_budget_holds_with_three_workers_at_concurrency_ten(
    fake_pipeline: Pipeline, fakes: Fakes
) -> None:
    """BOOK_BUDGET_USD worth 2.5 images, five 9-page books at once on 3 workers of
    concurrency 10 (in this process, each with its own pollers and connections: the
    reservations race in the database as across machines): each book gets exactly 2
    pages drawn and 7 FAILED `generate: budget: …`, not retried. Raising the budget and
    illustrating again draws only the 7."""
    limit = 2.5 * one_image(fake_pipeline.settings) / 1e6
    pipeline = fake_pipeline.with_settings(book_budget_usd=limit, illustration_concurrency=10)
    database = pipeline.database
    fakes.gemini.set_latency(0.3)  # every reservation is made while calls are in flight
    book_ids = [pipeline.book(9, photos=f"budget{n}") for n in range(5)]

    statuses = await _illustrate_on_workers(pipeline, book_ids, 3)

    assert statuses == [BookStatus.PARTIAL] * 5
    assert fakes.gemini.call_count == 10
    for book_id in book_ids:
        _, pages, notes = pipeline.load(book_id)
        drawn = [p for p in pages if p.moderation_status is ModerationStatus.OK]
        stopped = [p for p in pages if p.moderation_status is ModerationStatus.FAILED]
        assert (len(drawn), len(stopped)) == (2, 7), book_id
        for page in stopped:
            reason = page.moderation_reason or ""
            assert reason.startswith("generate: budget: book budget (BOOK_BUDGET_USD)"), reason
            assert page.model_calls == 0
        assert len(ledger(database, book_id)) == 2
        assert "7 were not drawn: the book's budget" in notes[0].message
        with database.sessions() as session:
            budget = session.get(CostBudget, f"book:{book_id}")
        assert budget is not None and budget.charged_micro_usd <= round(limit * 1e6)

    raised = pipeline.with_settings(book_budget_usd=10 * limit)
    outcome = await raised.illustrate(book_ids[0])
    assert outcome.status is BookStatus.COMPLETED
    assert fakes.gemini.call_count == 17  # only the 7 missing pages
    assert len(ledger(database, book_ids[0])) == 9


async def test_a_parents_daily_budget_stops_their_second_book_not_another_parents(
    fake_pipeline: Pipeline, fakes: Fakes
) -> None:
    """USER_DAILY_BUDGET_USD worth 4.5 images: the parent's first 3-page book is drawn,
    their second stops after one page (`generate: budget: daily budget …`); another
    parent's book the same day is drawn in full."""
    daily = 4.5 * one_image(fake_pipeline.settings) / 1e6
    pipeline = fake_pipeline.with_settings(user_daily_budget_usd=daily)
    parent = f"parent-{datetime.now(UTC).timestamp()}"
    first = pipeline.book(3, photos="day1", user_id=parent)
    second = pipeline.book(3, photos="day2", user_id=parent)
    other = pipeline.book(3, photos="day3", user_id=f"{parent}-other")

    assert (await pipeline.illustrate(first)).pages_with_image == 3
    statuses = await _illustrate_on_workers(pipeline, [second, other], 1)

    assert statuses == [BookStatus.PARTIAL, BookStatus.COMPLETED]
    _, pages, _ = pipeline.load(second)
    reasons = sorted(p.moderation_reason or "" for p in pages)
    assert reasons[0] == ""  # one drawn
    assert all("daily budget of the parent (USER_DAILY_BUDGET_USD)" in r for r in reasons[1:])
    assert fakes.gemini.call_count == 7
    with pipeline.database.sessions() as session:
        by_user = costs_since(session, datetime.now(UTC) - timedelta(hours=1), CostGrouping.USER)
    calls = {line.key: line.calls for line in by_user.lines}
    assert calls[parent] == 4 and calls[f"{parent}-other"] == 3


async def test_cost_per_delivered_page_stays_one_image_under_cdn_500s(
    fake_pipeline: Pipeline, fakes: Fakes
) -> None:
    """Every page's first upload answers 500: the retry stores the kept draft, so each
    delivered page cost exactly one image's price (docs/behaviour.md, never paying twice)."""
    pipeline = fake_pipeline.with_settings(page_retry_attempts=3)
    fakes.cloudinary.fail_next_uploads(3, CloudFault.server_error(500))
    book_id = pipeline.book(3, photos="cdn500")

    outcome = await pipeline.illustrate(book_id)

    assert outcome.status is BookStatus.COMPLETED
    image = priced(answered(fakes)[0].usage or {})
    with pipeline.database.sessions() as session:
        cost = book_cost(session, book_id)
    assert [round(cost.pages[n].cost_usd * 1e6) for n in (1, 2, 3)] == [image] * 3
    assert round(cost.total.cost_usd * 1e6) == 3 * image and cost.total.calls == 3


@pytest.mark.process
async def test_kill_9_during_the_model_call_leaves_a_may_have_been_billed_row(
    fake_pipeline: Pipeline, fakes: Fakes, tmp_path: Path
) -> None:
    """A worker killed with kill -9 while the model draws: its call's row was written
    before the call, so it stays, never closed, counted as "may have been billed" at the
    expected cost."""
    fakes.gemini.fail_when("Mia", Fault.hang(60), times=1)
    book_id = fake_pipeline.book(1, photos="kill9")
    with worker_processes(fake_pipeline.settings, fakes, 1, tmp_path) as (victim,):
        await wait_until_ready([victim])
        handle = await fake_pipeline.start(book_id)
        await wait_until(lambda: fakes.gemini.call_count == 1)
        victim.signal(signal.SIGKILL)
        await victim.exit_code(within=5)
    rows = ledger(fake_pipeline.database, book_id)
    assert [(row.outcome, row.cost_micro_usd) for row in rows] == [(None, None)]
    with fake_pipeline.database.sessions() as session:
        cost = book_cost(session, book_id)
    assert cost.total.maybe_billed_calls == 1
    assert round(cost.total.maybe_billed_usd * 1e6) == one_image(fake_pipeline.settings)

    await handle.terminate("test over")  # a survivor would draw it (test_crashes)


async def test_a_storys_call_is_priced_by_model_prices_and_stopped_by_a_budget(
    fake_pipeline: Pipeline, fakes: Fakes
) -> None:
    """The text model's prices are not in the table (its call is recorded, cost unknown)
    until MODEL_PRICES gives them; a book budget too small for the story fails it at once
    (`write: budget: …`) without calling the model."""
    text_prices = {"input_text": 0.1, "input_image": 0.1, "output_text": 0.4}
    plain = fake_pipeline
    overridden = plain.with_settings(model_prices={plain.settings.gemini_text_model: text_prices})
    starved = plain.with_settings(book_budget_usd=0.000001)
    database = plain.database
    books = [plain.draft(2, photos=f"story{n}") for n in range(3)]
    outcomes = []
    for pipeline, book_id in zip((plain, overridden, starved), books, strict=True):
        async with pipeline.worker():
            handle = await pipeline.start_story(book_id)
            outcomes.append(await handle.result())

    assert [o.status for o in outcomes] == [BookStatus.STORY_READY] * 2 + [BookStatus.FAILED]
    assert (outcomes[2].reason or "").startswith("write: budget: book budget (BOOK_BUDGET_USD)")
    assert fakes.gemini.call_count == 2
    (unknown,), (known,) = ledger(database, books[0]), ledger(database, books[1])
    assert ledger(database, books[2]) == []
    assert (unknown.kind, unknown.outcome, unknown.cost_micro_usd) == ("story", "answered", None)
    usage = fakes.gemini.requests[1].usage or {}
    dollars = (
        usage["promptTokenCount"] * 0.1
        + (usage["candidatesTokenCount"] + usage["thoughtsTokenCount"]) * 0.4
    )
    assert known.cost_micro_usd == round(dollars) > 0
    with database.sessions() as session:
        assert book_cost(session, books[0]).story.unknown_cost_calls == 1


@pytest.mark.process
async def test_a_worker_exports_what_its_calls_cost_for_prometheus(
    fake_pipeline: Pipeline, fakes: Fakes, tmp_path: Path
) -> None:
    """`storywink_model_cost_micro_usd_total{model,kind}` and the tokens by kind, on the
    worker's METRICS_PORT, add up to the ledger's figures."""
    book_id = fake_pipeline.book(2, photos="metrics")
    port = free_port()
    with worker_processes(
        fake_pipeline.settings, fakes, 1, tmp_path, {"METRICS_PORT": str(port)}
    ) as workers:
        await wait_until_ready(workers)
        outcome = await (await fake_pipeline.start(book_id)).result()
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    assert outcome.status is BookStatus.COMPLETED
    labels = f'kind="image",model="{DEFAULT_IMAGE_MODEL}"'
    costs = [line for line in text.splitlines() if line.startswith(MODEL_COST) and labels in line]
    assert len(costs) == 1, text[-3000:]
    exported = float(costs[0].rsplit(" ", 1)[1])
    assert (
        exported
        == sum(row.cost_micro_usd or 0 for row in ledger(fake_pipeline.database, book_id))
        > 0
    )
    image_tokens = [
        line
        for line in text.splitlines()
        if line.startswith(MODEL_TOKENS) and 'token_kind="output_image"' in line
    ]
    assert image_tokens and float(image_tokens[0].rsplit(" ", 1)[1]) == 2 * 1120
