"""Three replicas share the image model's quota through ILLUSTRATION_RATE_LIMIT.

ILLUSTRATION_RATE_LIMIT drives the shared limiter (storywink/quota/slots.py): one database row
from which every worker reserves evenly spaced slots, so neither the server's task-queue
partitions nor a full bucket at start-up matter. This test runs a stock dev server (default
partitions) with the limit equal to the quota.

Time is scaled down: the fake model's quota is 40 calls per sliding 10 s window (4 per
second), and 48 pages are drawn, so the quota binds for most of the run.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from storywink.contract import BookStatus
from storywink.db.connection import Database
from storywink.temporal.connection import connect_temporal
from tests.support.helpers import create_book, start
from tests.support.provider_fakes import Fakes, SettingsFactory
from tests.support.temporal_server import dev_server
from tests.support.worker_processes import wait_until_ready, worker_processes

# It measures a rate against the clock: `make test` runs it alone, after the parallel tests.
pytestmark = [pytest.mark.process, pytest.mark.alone]

QUOTA, WINDOW = 40, 10.0  # the model's: calls per sliding window of seconds
LIMIT_PER_MINUTE = QUOTA / WINDOW * 60  # 240 images a minute: the quota itself
BOOKS, PAGES = 4, 12
STEADY_AFTER = 2.0  # seconds: the workers' first, slower calls are behind


def _most_in_any_window(times: list[float], window: float) -> int:
    return max(sum(1 for u in times if t <= u < t + window) for t in times)


async def test_three_replicas_stay_within_the_model_quota_and_use_most_of_it(
    database: Database,
    fakes: Fakes,
    provider_settings: SettingsFactory,
    tmp_path: Path,
) -> None:
    fakes.gemini.set_quota(QUOTA, window_seconds=WINDOW)
    fakes.gemini.set_latency(0.5)
    book_ids = [create_book(database, fakes.photo_urls(f"q{n}", PAGES)) for n in range(BOOKS)]
    env = {"ILLUSTRATION_RATE_LIMIT": f"{LIMIT_PER_MINUTE:g}", "PAGE_RETRY_ATTEMPTS": "10"}
    async with dev_server(tmp_path) as server:
        settings = provider_settings(temporal_address=server.address)
        client = await connect_temporal(settings)
        with worker_processes(settings, fakes, 3, tmp_path, env) as replicas:
            await wait_until_ready(replicas)
            handles = [await start(client, settings, book_id) for book_id in book_ids]
            outcomes = await asyncio.wait_for(
                asyncio.gather(*(handle.result() for handle in handles)), timeout=90
            )

    calls = fakes.gemini.requests
    times = [call.at - calls[0].at for call in calls]
    steady = [t for t in times if t >= STEADY_AFTER]
    steady_rate = (len(steady) - 1) / (steady[-1] - steady[0])
    utilisation = steady_rate / (QUOTA / WINDOW)
    most = _most_in_any_window(times, WINDOW)
    print(
        f"{len(calls)} calls in {times[-1]:.1f}s, {fakes.gemini.quota_rejections} answered 429, "
        f"at most {most} in {WINDOW:g}s (quota {QUOTA}); steady {steady_rate:.3f}/s "
        f"= {utilisation:.1%} of the quota (limit {LIMIT_PER_MINUTE:g}/min)"
    )
    assert [outcome.status for outcome in outcomes] == [BookStatus.COMPLETED] * BOOKS
    # A call reaching the model a little early (the first of a process is slower) may be
    # answered 429 once; the limiter then shifts its schedule (tests/quota/test_quota_limiter.py),
    # and that page's call is made again.
    assert fakes.gemini.quota_rejections <= 1
    assert len(calls) == BOOKS * PAGES + fakes.gemini.quota_rejections
    assert BOOKS * PAGES > QUOTA and times[-1] > WINDOW  # the quota binds
    assert most <= QUOTA
    assert utilisation >= 0.95, f"only {utilisation:.1%} of the quota used"
