"""Makespan: how long a book takes when the model takes L seconds per page.

Three `python worker.py` processes, each allowed more pages at once than the book has,
so every page can be drawn at the same time: the ideal is makespan ≈ L. The old
BullMQ system needed about 9 x L for a 9-page book with one replica.
"""

from __future__ import annotations

from temporalio.client import Client

from bench.harness import rig
from bench.report import BenchResult, Column
from storywink import contract
from tests.support.worker_processes import page_identities

WORKERS = 3
CONCURRENCY = 30  # per worker: any one of them could take a whole 30-page book
CASES = ((9, 2.0), (30, 2.0), (9, 5.0), (30, 5.0))  # (pages, model latency L in s)
QUICK_CASES = ((9, 2.0), (30, 2.0))
WARM_UP_PAGES = 3


async def run(client: Client, quick: bool) -> BenchResult:
    result = BenchResult(
        name="makespan",
        title="Makespan of one book, fake model latency L",
        columns=[
            Column("pages", "pages"),
            Column("latency_s", "L (s)", ".1f"),
            Column("makespan_s", "makespan (s)", ".2f"),
            Column("makespan_over_latency", "makespan / L", ".2f"),
            Column("calls_spread_s", "calls spread (s)", ".2f"),
            Column("workers_used", "workers used"),
            Column("status", "book"),
        ],
        parameters={"workers": WORKERS, "illustration_concurrency": CONCURRENCY},
        notes=[
            "ideal makespan / L is 1; the old system needed ~9 x L for 9 pages (one replica)",
            "calls spread: first to last model call of the book (dispatch of the fan-out)",
        ],
    )
    async with rig(client) as bench:
        with bench.workers(WORKERS, ILLUSTRATION_CONCURRENCY=CONCURRENCY) as workers:
            await bench.wait_for_workers(workers)
            await bench.illustrate(WARM_UP_PAGES, within=60)  # connections, caches
            for pages, latency in QUICK_CASES if quick else CASES:
                bench.fakes.gemini.set_latency(latency)
                calls_before = bench.fakes.gemini.call_count
                outcome, seconds, book_id = await bench.illustrate(pages, within=60 + 3 * latency)
                arrivals = [call.at for call in bench.fakes.gemini.requests[calls_before:]]
                handle = bench.client.get_workflow_handle(
                    contract.illustration_workflow_id(book_id)
                )
                used = len(await page_identities(handle))
                result.rows.append(
                    {
                        "pages": pages,
                        "latency_s": latency,
                        "makespan_s": round(seconds, 3),
                        "makespan_over_latency": round(seconds / latency, 3),
                        "calls_spread_s": round(max(arrivals) - min(arrivals), 3),
                        "workers_used": used,
                        "status": outcome.status.value,
                    }
                )
    return result
