"""Many viewers, one watcher: every open stream of a book shares the book's one progress
watcher, and a stream whose client went away is closed promptly."""

from __future__ import annotations

import asyncio
import re
import time

import httpx

from storywink.db.connection import Database
from tests.support.helpers import create_book
from tests.support.sse import events_of
from tests.support.web_app import WEB_SETTINGS, api_client

INTERVAL = float(WEB_SETTINGS["web_progress_interval_seconds"])  # type: ignore[arg-type]
STREAMS_PER_BOOK = 20


async def metric(http: httpx.AsyncClient, name: str) -> float:
    text = (await http.get("/metrics")).text
    found = re.search(rf"^{name} ([0-9.e+-]+)$", text, re.MULTILINE)
    assert found, f"{name} not in /metrics"
    return float(found.group(1))


async def wait_for_metric(http: httpx.AsyncClient, name: str, value: float) -> None:
    async with asyncio.timeout(10):
        while True:
            if await metric(http, name) == value:
                return
            await asyncio.sleep(0.05)


async def hold_stream(http: httpx.AsyncClient, book_id: str, opened: asyncio.Event) -> None:
    async with http.stream("GET", f"/books/{book_id}/events") as response:
        assert response.status_code == 200
        async for event in events_of(response):
            if event.event == "progress":
                opened.set()


async def test_forty_streams_on_two_books_cost_two_progress_reads_per_interval(
    database: Database, web_url: str
) -> None:
    book_ids = [create_book(database, [None] * 3, user_id="parent-streams") for _ in range(2)]
    limits = httpx.Limits(max_connections=100)
    async with (
        api_client(web_url, "parent-streams") as control,
        httpx.AsyncClient(
            base_url=web_url, headers=control.headers, timeout=30, limits=limits
        ) as viewers,
    ):
        opened = [asyncio.Event() for _ in range(2 * STREAMS_PER_BOOK)]
        streams = [
            asyncio.create_task(hold_stream(viewers, book_ids[n % 2], opened[n]))
            for n in range(2 * STREAMS_PER_BOOK)
        ]
        async with asyncio.timeout(20):
            await asyncio.gather(*(event.wait() for event in opened))
        assert await metric(control, "storywink_web_streams_open") == 2 * STREAMS_PER_BOOK
        assert await metric(control, "storywink_web_watchers") == 2

        reads_before = await metric(control, "storywink_web_progress_reads_total")
        started = time.monotonic()
        await asyncio.sleep(2.0)
        reads = await metric(control, "storywink_web_progress_reads_total") - reads_before
        intervals = (time.monotonic() - started) / INTERVAL
        # About one read per book per interval (not one per stream: that would be 20 x).
        assert 2 <= reads <= 2 * (intervals + 2), (reads, intervals)

        for stream in streams:
            stream.cancel()
        await asyncio.gather(*streams, return_exceptions=True)
        closed_at = time.monotonic()
        await wait_for_metric(control, "storywink_web_streams_open", 0)
        await wait_for_metric(control, "storywink_web_watchers", 0)
        assert time.monotonic() - closed_at < 3
        reads_after_close = await metric(control, "storywink_web_progress_reads_total")
        await asyncio.sleep(3 * INTERVAL)
        assert await metric(control, "storywink_web_progress_reads_total") == reads_after_close
