"""Quota: images per minute achieved against the model's quota, and the 429s it cost.

The fake Gemini answers 429 (with RetryInfo) beyond its quota in a sliding window; the
workers get ILLUSTRATION_RATE_LIMIT set to exactly that quota, which the shared limiter
(storywink/quota/slots.py, one database row) enforces across every worker. A book with more
pages than the run can draw keeps the workers busy; images are counted over whole quota
windows from the first model call (start-up included), so the fake caps the figure at
1.0 x quota and the question is how close to it the workers get, and how many 429s they
run into on the way. Run on the one-partition server and on a stock one (4 partitions).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from temporalio.client import Client, WorkflowFailureError

from bench.harness import Rig, rig, temporal_server, wait_until
from bench.report import BenchResult, Cell, Column
from storywink.temporal.server_config import FAIRNESS

QUOTA_PER_MINUTE = 120
WINDOW_SECONDS = 10.0  # the per-minute quota scaled down: 20 images per 10 s
LATENCY_SECONDS = 0.5
CONCURRENCY = 10  # per worker: concurrency is never what limits the rate
RETRY_ATTEMPTS = 20  # pages outlive the run even without a rate limit
WINDOWS = 3
QUICK_WINDOWS = 1
ONE, STOCK = "1 partition", "stock (4)"
# (server's page-queue partitions, workers, ILLUSTRATION_RATE_LIMIT per minute or None)
CASES: tuple[tuple[str, int, float | None], ...] = (
    (ONE, 3, QUOTA_PER_MINUTE),
    (STOCK, 3, QUOTA_PER_MINUTE),
    (ONE, 3, None),
)
QUICK_CASES: tuple[tuple[str, int, float | None], ...] = ((STOCK, 3, QUOTA_PER_MINUTE),)


async def run(client: Client, quick: bool) -> BenchResult:
    windows = QUICK_WINDOWS if quick else WINDOWS
    result = BenchResult(
        name="quota",
        title="Images per minute against the model's quota",
        columns=[
            Column("server", "page queue"),
            Column("workers", "workers"),
            Column("rate_limit_per_minute", "rate limit/min"),
            Column("images", "images"),
            Column("seconds", "over (s)", ".0f"),
            Column("images_per_minute", "images/min", ".1f"),
            Column("fraction_of_quota", "/ quota", ".2f"),
            Column("rejections", "429s"),
            Column("rejection_share", "429s / calls", ".2f"),
            Column("killed_on_stop", "SIGTERM ignored"),
        ],
        parameters={
            "quota_per_minute": QUOTA_PER_MINUTE,
            "quota_window_s": WINDOW_SECONDS,
            "per_window": _per_window(),
            "model_latency_s": LATENCY_SECONDS,
            "illustration_concurrency": CONCURRENCY,
            "page_retry_attempts": RETRY_ATTEMPTS,
        },
        notes=[
            "counted over whole quota windows from the first model call: images = calls "
            "answered with an image, 429s = calls the fake refused over its quota",
            "SIGTERM ignored: workers still running 20 s after SIGTERM (once the run was "
            "cancelled), then killed",
        ],
    )
    async with temporal_server(FAIRNESS) as stock:  # default partitions
        for server, workers, limit in QUICK_CASES if quick else CASES:
            async with rig(stock if server == STOCK else client) as bench:
                row = await _measure(bench, workers, limit, windows * WINDOW_SECONDS)
                row["server"] = server
                row["killed_on_stop"] = len(bench.killed_on_stop)
                result.rows.append(row)
    return result


def _per_window() -> int:
    return round(QUOTA_PER_MINUTE * WINDOW_SECONDS / 60)


async def _measure(
    bench: Rig, workers: int, limit: float | None, seconds: float
) -> dict[str, Cell]:
    gemini = bench.fakes.gemini
    gemini.set_latency(LATENCY_SECONDS)
    gemini.set_quota(_per_window(), window_seconds=WINDOW_SECONDS)
    env: dict[str, str | int | float] = {
        "ILLUSTRATION_CONCURRENCY": CONCURRENCY,
        "PAGE_RETRY_ATTEMPTS": RETRY_ATTEMPTS,
    }
    if limit is not None:
        env["ILLUSTRATION_RATE_LIMIT"] = limit
    pages = round(QUOTA_PER_MINUTE / 60 * seconds * 1.5) + 10
    with bench.workers(workers, **env) as processes:
        await bench.wait_for_workers(processes)
        handle = await bench.start_book(bench.create_book(pages))
        await wait_until(lambda: gemini.call_count > 0, 60, "the first model call")
        first = gemini.requests[0].at
        await asyncio.sleep(max(0.0, first + seconds + LATENCY_SECONDS - time.monotonic()))
        await handle.cancel()  # the run cancels its pages and settles the book
        with contextlib.suppress(WorkflowFailureError):
            await asyncio.wait_for(handle.result(), timeout=60)
    calls = [call for call in gemini.requests if call.at < first + seconds]
    images = sum(1 for call in calls if call.outcome == "ok")
    rejections = sum(1 for call in calls if call.outcome == "http 429")
    per_minute = images / seconds * 60
    return {
        "workers": workers,
        "rate_limit_per_minute": limit,
        "images": images,
        "seconds": seconds,
        "images_per_minute": round(per_minute, 2),
        "fraction_of_quota": round(per_minute / QUOTA_PER_MINUTE, 3),
        "rejections": rejections,
        "rejection_share": round(rejections / max(1, len(calls)), 3),
    }
