"""Fair: one parent's 30-page book, then 1 s later five other parents' 3-page books and a
3-page book of the first parent started with priority 1, under a quota of QUOTA/min:
first-come first-served against fair (fairness on, one fairness key per parent), in the
same run and with the same work.

Three workers, ILLUSTRATION_RATE_LIMIT = the quota (storywink/quota/slots.py). Pages a worker has
taken wait for the model in its own queue (storywink/quota/queue.py); pages not yet taken
wait in Temporal's, which the server orders by fairness key. So the rows differ in
ILLUSTRATION_CONCURRENCY too: the default 3, and 1, about what the quota keeps busy
(quota x model latency / workers). Times from the big book's start.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass

from temporalio.client import Client

from bench.harness import rig, temporal_server
from bench.report import BenchResult, Cell, Column
from storywink.temporal.server_config import FAIRNESS, ONE_PARTITION

QUOTA = 60  # per minute: the 30/min, twice as fast to bound the bench
LATENCY = 2.0
BIG, SMALL, SMALL_BOOKS = 30, 3, 5
QUICK = (12, 2, 3)
FAIR_SERVER: Mapping[str, str] = {**FAIRNESS, **ONE_PARTITION}


@dataclass(frozen=True)
class Case:
    name: str
    server: Mapping[str, str]
    owners: bool  # one owner per parent (else every book is the first parent's)
    concurrency: int  # ILLUSTRATION_CONCURRENCY


CASES = (
    # First-come first-served: fairness off on the server and one owner for every book, so
    # neither the server's queue nor the workers' can tell the parents apart.
    Case("FIFO", {**ONE_PARTITION, "matching.enableFairness": "false"}, False, 3),
    Case("fair", FAIR_SERVER, True, 3),
    Case("fair, concurrency 1", FAIR_SERVER, True, 1),
    Case("fair, concurrency 1, stock partitions", FAIRNESS, True, 1),
)


async def run(client: Client, quick: bool) -> BenchResult:
    big, small, count = QUICK if quick else (BIG, SMALL, SMALL_BOOKS)
    result = BenchResult(
        name="fair",
        title=f"A {big}-page book, then {count} other parents' {small}-page books 1 s later",
        columns=[
            Column("case", "case"),
            Column("concurrency", "concurrency"),
            Column("small_median_s", "small books median (s)", ".1f"),
            Column("small_max_s", "small books last (s)", ".1f"),
            Column("big_s", "big book (s)", ".1f"),
            Column("priority_s", "priority-1 book (s)", ".1f"),
        ],
        parameters={"quota_per_minute": QUOTA, "model_latency_s": LATENCY, "workers": 3},
        notes=[
            "goal (issue 12): small books' median <= 40 % of FIFO's, big book <= 110 % of FIFO's",
            "priority-1 book: 3 pages of the big book's owner, started with priority 1 with "
            "the small books; seconds to done",
            "concurrency: ILLUSTRATION_CONCURRENCY, pages each worker takes at once",
        ],
    )
    for case in CASES[:2] if quick else CASES:
        async with temporal_server(case.server) as server:
            row = await _measure(server, case, big, small, count)
        result.rows.append({"case": case.name, "concurrency": case.concurrency, **row})
    return result


async def _measure(client: Client, case: Case, big: int, small: int, count: int) -> dict[str, Cell]:
    async with rig(client) as bench:
        bench.fakes.gemini.set_latency(LATENCY)
        bench.fakes.gemini.set_quota(QUOTA // 6, window_seconds=10.0)
        big_id = bench.create_book(big, user_id="parent-a")
        small_ids = [
            bench.create_book(small, user_id=f"parent-{n}" if case.owners else "parent-a")
            for n in range(count)
        ]
        vip = bench.create_book(small, user_id="parent-a")
        env = {"ILLUSTRATION_CONCURRENCY": case.concurrency, "PAGE_RETRY_ATTEMPTS": 20}
        with bench.workers(3, ILLUSTRATION_RATE_LIMIT=QUOTA, **env) as workers:
            await bench.wait_for_workers(workers)
            started = time.monotonic()
            handles = [await bench.start_book(big_id)]
            await asyncio.sleep(1.0)
            handles += [await bench.start_book(book) for book in small_ids]
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
        "priority_s": round(times[-1], 2),
    }
