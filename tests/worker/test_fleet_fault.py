"""A fleet-wide fault (the key revoked, the model shut down) while books are in flight:
no page is settled FAILED and no parent is told anything; the worker stops taking pages
(`/readyz` 503 `paused`) and takes them again by itself once the fault clears, or a worker
with the right settings takes them; every book then completes with one answered model
call per page. Real `python worker.py` processes, the real SDKs, the fake Gemini."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from temporalio.client import WorkflowHandle

from storywink.contract import BookOutcome, BookStatus, ModerationStatus
from storywink.db.connection import Database
from tests.support.helpers import load_book, wait_until
from tests.support.pipeline import Pipeline
from tests.support.provider_fakes import GEMINI_KEY, Fakes
from tests.support.worker_processes import (
    Replica,
    free_port,
    wait_until_ready,
    worker_processes,
)

pytestmark = pytest.mark.process

BOOKS, PAGES = 3, 6
FAST_FLEET = {
    "FLEET_FAULT_RETRY_SECONDS": "1",
    "FLEET_FAULT_PROBE_SECONDS": "0.5",
    "ILLUSTRATION_CONCURRENCY": "3",
}


async def _readyz(replica: Replica) -> tuple[int, str]:
    async with httpx.AsyncClient(timeout=1) as http:
        response = await http.get(f"http://127.0.0.1:{replica.health_port}/readyz")
    return response.status_code, response.text.strip()


async def _until_readyz(replica: Replica, expected: tuple[int, str], within: float = 30) -> None:
    async with asyncio.timeout(within):
        while await _readyz(replica) != expected:
            assert replica.process.poll() is None, replica.log.read_text()[-3000:]
            await asyncio.sleep(0.1)


def _answered(fakes: Fakes) -> int:
    """Model calls answered with a picture (200), not the refused ones."""
    return sum(1 for r in fakes.gemini.requests if r.outcome == "ok" and not r.wants_json)


def _assert_nothing_settled(database: Database, book_ids: list[str]) -> None:
    for book_id in book_ids:
        book, pages, notes = load_book(database, book_id)
        assert book.status is BookStatus.ILLUSTRATING, book.status
        assert not [p for p in pages if p.moderation_status is ModerationStatus.FAILED]
        assert notes == []


async def _books_in_flight(
    pipeline: Pipeline, books: int = BOOKS, pages: int = PAGES
) -> tuple[list[str], list[WorkflowHandle[object, BookOutcome]]]:
    book_ids = [pipeline.book(pages, photos=f"fleet{n}", title=f"Book {n}") for n in range(books)]
    handles = [await pipeline.start(book_id) for book_id in book_ids]
    return book_ids, handles


async def _metric(port: int, name: str) -> list[str]:
    async with httpx.AsyncClient(timeout=2) as http:
        text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    return [line for line in text.splitlines() if line.startswith(name)]


async def test_a_revoked_key_pauses_the_worker_and_it_finishes_every_book_once_fixed(
    fake_pipeline: Pipeline, fakes: Fakes, tmp_path: Path
) -> None:
    settings, database = fake_pipeline.settings, fake_pipeline.database
    fakes.gemini.set_latency(0.5)
    metrics_port = free_port()
    env = {
        **FAST_FLEET,
        "METRICS_PORT": str(metrics_port),
        # A text model with an announced shutdown: its date is exported at start.
        "GEMINI_TEXT_MODEL": "gemini-3.1-flash-lite",
    }
    with worker_processes(settings, fakes, 1, tmp_path, env) as (worker,):
        await wait_until_ready([worker])
        book_ids, handles = await _books_in_flight(fake_pipeline)
        await wait_until(lambda: _answered(fakes) >= 2)  # pages in flight, some drawn
        fakes.gemini.revoke_key()

        await _until_readyz(worker, (503, "paused"))
        (paused,) = await _metric(metrics_port, "storywink_page_work_paused")
        assert 'setting="GEMINI_API_KEY"' in paused and paused.endswith(" 1")
        (shutdown,) = await _metric(metrics_port, "storywink_model_shutdown_timestamp_seconds")
        assert 'model="gemini-3.1-flash-lite"' in shutdown
        assert shutdown.endswith(" 1809648000")  # 2027-05-07T00:00:00Z
        await asyncio.sleep(2)  # pages wait; retries are due every second
        calls_while_paused = fakes.gemini.call_count
        await asyncio.sleep(1.5)
        assert fakes.gemini.call_count == calls_while_paused  # paused: no page taken
        _assert_nothing_settled(database, book_ids)

        fakes.gemini.restore_key()
        await _until_readyz(worker, (200, "ready"))
        (resumed,) = await _metric(metrics_port, "storywink_page_work_paused")
        assert resumed.endswith(" 0")
        outcomes = await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), 90)

    assert [o.status for o in outcomes] == [BookStatus.COMPLETED] * BOOKS
    assert _answered(fakes) == BOOKS * PAGES  # one answered model call per page
    for book_id in book_ids:
        _, pages, notes = load_book(database, book_id)
        assert all(p.moderation_status is ModerationStatus.OK for p in pages)
        assert len(notes) == 1
    log = worker.log.read_text()
    assert "page work paused: GEMINI_API_KEY refused (HTTP 400 INVALID_ARGUMENT" in log
    assert "page work resumed: GEMINI_API_KEY works again" in log
    assert GEMINI_KEY not in log


async def test_a_shut_down_model_waits_for_a_worker_with_the_right_settings(
    fake_pipeline: Pipeline, fakes: Fakes, tmp_path: Path
) -> None:
    settings, database = fake_pipeline.settings, fake_pipeline.database
    fakes.gemini.set_latency(0.5)
    for folder in ("old", "new"):
        (tmp_path / folder).mkdir()
    with worker_processes(settings, fakes, 1, tmp_path / "old", FAST_FLEET) as (old,):
        await wait_until_ready([old])
        book_ids, handles = await _books_in_flight(fake_pipeline, books=2, pages=4)
        await wait_until(lambda: _answered(fakes) >= 1)
        fakes.gemini.retire_model(settings.gemini_image_model)  # Google shut it down

        await _until_readyz(old, (503, "paused"))
        _assert_nothing_settled(database, book_ids)
        fixed = {**FAST_FLEET, "GEMINI_IMAGE_MODEL": "gemini-3-pro-image"}
        with worker_processes(settings, fakes, 1, tmp_path / "new", fixed) as (new,):
            await wait_until_ready([new])
            outcomes = await asyncio.wait_for(
                asyncio.gather(*(h.result() for h in handles)),
                90,
            )
        assert await _readyz(old) == (503, "paused")  # its model is still gone

    assert [o.status for o in outcomes] == [BookStatus.COMPLETED] * 2
    assert _answered(fakes) == 2 * 4
    assert "page work paused: the model setting refused (HTTP 404 NOT_FOUND" in old.log.read_text()
