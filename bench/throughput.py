"""Throughput: pages per second with an instant model, against a bare Temporal fan-out.

Ours: one `python worker.py` process, the fake Gemini answering at once and the fake
Cloudinary storing, so what is measured is the pipeline (fetches, prompt, SDK calls,
upload, database writes, heartbeats, the workflow's prepare and finalize). The baseline,
in the same run on the same dev server: a workflow fanning out as many no-op activities
on one in-process worker with the same concurrency and the same two-queue layout.
"""

from __future__ import annotations

import time
import uuid

from temporalio.client import Client
from temporalio.worker import Worker

from bench.fanout import FanOut, noop
from bench.harness import rig
from bench.report import BenchResult, Cell, Column

PAGES = 100
QUICK_PAGES = 30
CONCURRENCY = 20
WARM_UP = 5


async def run(client: Client, quick: bool) -> BenchResult:
    pages = QUICK_PAGES if quick else PAGES
    result = BenchResult(
        name="throughput",
        title="Throughput with an instant model vs a bare Temporal fan-out",
        columns=[
            Column("what", "what"),
            Column("items", "items"),
            Column("seconds", "seconds", ".2f"),
            Column("per_second", "per second", ".1f"),
            Column("ms_per_item", "ms / item", ".1f"),
            Column("overhead_ratio", "time vs bare", ".1f"),
        ],
        parameters={"concurrency": CONCURRENCY, "model_latency_s": 0.0, "storage": "fake CDN"},
        notes=["time vs bare: our seconds per page / the bare fan-out's seconds per activity"],
    )
    bare = await _bare_fan_out(client, pages)
    async with rig(client) as bench:
        with bench.workers(1, ILLUSTRATION_CONCURRENCY=CONCURRENCY) as workers:
            await bench.wait_for_workers(workers)
            await bench.illustrate(WARM_UP, within=60)
            outcome, ours, _ = await bench.illustrate(pages, within=120)
    result.rows.append(_row("bare no-op fan-out", pages, bare, bare))
    result.rows.append(_row(f"storywink ({outcome.status.value})", pages, ours, bare))
    return result


def _row(what: str, items: int, seconds: float, bare: float) -> dict[str, Cell]:
    return {
        "what": what,
        "items": items,
        "seconds": round(seconds, 3),
        "per_second": round(items / seconds, 2),
        "ms_per_item": round(seconds / items * 1000, 2),
        "overhead_ratio": round(seconds / bare, 2),
    }


async def _bare_fan_out(client: Client, count: int) -> float:
    """Seconds for a workflow fanning out `count` no-ops (after a warm-up run)."""
    queue = f"bench-fanout-{uuid.uuid4().hex[:8]}"
    activities = f"{queue}-activities"
    async with (
        Worker(client, task_queue=queue, workflows=[FanOut]),
        Worker(
            client,
            task_queue=activities,
            activities=[noop],
            max_concurrent_activities=CONCURRENCY,
        ),
    ):
        seconds = 0.0
        for n in (WARM_UP, count):
            started = time.monotonic()
            await client.execute_workflow(
                FanOut.run,
                args=[n, activities],
                id=f"{queue}-{n}",
                task_queue=queue,
            )
            seconds = time.monotonic() - started
    return seconds
