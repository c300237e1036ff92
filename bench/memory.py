"""Memory: peak RSS of one worker process with 50 pages in flight.

ILLUSTRATION_CONCURRENCY=50 and a fake model latency long enough that all 50 pages sit in
their model call at the same time; peak RSS is the kernel's VmHWM of the worker process
(/proc/<pid>/status), read once the book is done, next to its RSS when idle after a
2-page warm-up book.
"""

from __future__ import annotations

from temporalio.client import Client

from bench.harness import rig
from bench.report import BenchResult, Column

PAGES = 50
LATENCY_SECONDS = 10.0
QUICK_LATENCY_SECONDS = 6.0
WARM_UP_PAGES = 2


async def run(client: Client, quick: bool) -> BenchResult:
    latency = QUICK_LATENCY_SECONDS if quick else LATENCY_SECONDS
    result = BenchResult(
        name="memory",
        title=f"Worker memory with {PAGES} pages in flight",
        columns=[
            Column("pages", "pages"),
            Column("max_in_flight", "max in flight"),
            Column("idle_rss_mib", "RSS warm, idle (MiB)", ".1f"),
            Column("peak_rss_mib", "peak RSS (MiB)", ".1f"),
            Column("per_page_kib", "per page in flight (KiB)", ".0f"),
            Column("seconds", "book (s)", ".1f"),
            Column("status", "book"),
        ],
        parameters={"illustration_concurrency": PAGES, "model_latency_s": latency},
        notes=["peak RSS: VmHWM of the worker; per page: (peak - warm idle RSS) / max in flight"],
    )
    async with rig(client) as bench:
        with bench.workers(1, ILLUSTRATION_CONCURRENCY=PAGES) as (worker,):
            await bench.wait_for_workers([worker])
            await bench.illustrate(WARM_UP_PAGES, within=60)  # lazy imports, connections
            idle = worker.status_kib("VmRSS")
            bench.fakes.gemini.set_latency(latency)
            calls_before = bench.fakes.gemini.call_count
            outcome, seconds, _ = await bench.illustrate(PAGES, within=latency + 90)
            peak = worker.status_kib("VmHWM")
        arrivals = sorted(call.at for call in bench.fakes.gemini.requests[calls_before:])
        in_flight = max(
            sum(1 for other in arrivals if start <= other < start + latency) for start in arrivals
        )
    result.rows.append(
        {
            "pages": PAGES,
            "max_in_flight": in_flight,
            "idle_rss_mib": round(idle / 1024, 1),
            "peak_rss_mib": round(peak / 1024, 1),
            "per_page_kib": round((peak - idle) / max(1, in_flight)),
            "seconds": round(seconds, 2),
            "status": outcome.status.value,
        }
    )
    return result
