"""Fair: one parent's 30-page book, then 1 s later five other parents' 3-page books, under a
quota of QUOTA/min: first-come first-served (a server without fairness) against fair
(fairness on, one fairness key per parent), in the same run. Then priority: a backlog and
a 3-page book started with priority 1.

Three workers, ILLUSTRATION_RATE_LIMIT = the quota (storywink/quota.py), default
ILLUSTRATION_CONCURRENCY. Times from the big book's start.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Mapping

from temporalio.client import Client

from bench.harness import rig, temporal_server
from bench.report import BenchResult, Cell, Column
from storywink.server_config import FAIRNESS, ONE_PARTITION

QUOTA = 60  # per minute: the 30/min, twice as fast to bound the bench
LATENCY = 2.0
BIG, SMALL, SMALL_BOOKS = 30, 3, 5
QUICK = (12, 2, 3)
CONCURRENCY = int(os.environ.get("BENCH_FAIR_CONCURRENCY", "3"))  # ILLUSTRATION_CONCURRENCY
FIFO = "FIFO"
# First-come first-served: no fairness on the server, and every book of one owner, so
# neither the server's queue nor the workers' (storywink.quota_queue) can tell owners apart.
SERVERS: Mapping[str, Mapping[str, str]] = {
    FIFO: {**ONE_PARTITION, "matching.enableFairness": "false"},
    "fair": {**FAIRNESS, **ONE_PARTITION},
    "fair, stock partitions": FAIRNESS,
}


async def run(client: Client, quick: bool) -> BenchResult:
    big, small, count = QUICK if quick else (BIG, SMALL, SMALL_BOOKS)
    result = BenchResult(
        name="fair",
        title=f"A {big}-page book, then {count} other parents' {small}-page books 1 s later",
        columns=[
            Column("server", "server"),
            Column("small_median_s", "small books median (s)", ".1f"),
            Column("small_max_s", "small books last (s)", ".1f"),
            Column("big_s", "big book (s)", ".1f"),
            Column("priority_s", "priority-1 book (s)", ".1f"),
        ],
        parameters={
            "quota_per_minute": QUOTA,
            "model_latency_s": LATENCY,
            "workers": 3,
            "illustration_concurrency": CONCURRENCY,
        },
        notes=[
            "goal (issue 12): small books' median <= 40 % of FIFO's, big book <= 110 % of FIFO's",
            "FIFO: fairness off on the server and every book of one owner",
            "priority-1 book: a 3-page book of the big book's owner started with priority 1 "
            "1 s after the big book (fair servers only), seconds to done",
        ],
    )
    for name, config in SERVERS.items():
        if quick and name == "fair, stock partitions":
            continue
        async with temporal_server(config) as server:
            row = await _measure(server, big, small, count, fair=name != FIFO)
        result.rows.append({"server": name, **row})
    return result


async def _measure(client: Client, big: int, small: int, count: int, fair: bool) -> dict[str, Cell]:
    async with rig(client) as bench:
        bench.fakes.gemini.set_latency(LATENCY)
        bench.fakes.gemini.set_quota(QUOTA // 6, window_seconds=10.0)
        big_id = bench.create_book(big, user_id="parent-a")
        small_ids = [
            bench.create_book(small, user_id=f"parent-{n}" if fair else "parent-a")
            for n in range(count)
        ]
        vip = bench.create_book(small, user_id="parent-a") if fair else None
        env = {"ILLUSTRATION_CONCURRENCY": CONCURRENCY, "PAGE_RETRY_ATTEMPTS": 20}
        with bench.workers(3, ILLUSTRATION_RATE_LIMIT=QUOTA, **env) as workers:
            await bench.wait_for_workers(workers)
            started = time.monotonic()
            handles = [await bench.start_book(big_id)]
            await asyncio.sleep(1.0)
            handles += [await bench.start_book(book) for book in small_ids]
            if vip is not None:
                handles.append(await bench.start_book(vip, priority=1))

            async def done(handle: object) -> float:
                await handle.result()  # type: ignore[attr-defined]
                return time.monotonic() - started

            times = await asyncio.wait_for(asyncio.gather(*(done(h) for h in handles)), timeout=200)
    smalls = times[1 : 1 + count]
    return {
        "small_median_s": round(statistics.median(smalls), 2),
        "small_max_s": round(max(smalls), 2),
        "big_s": round(times[0], 2),
        "priority_s": round(times[-1], 2) if vip is not None else None,
    }
