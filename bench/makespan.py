"""Makespan: how long a book takes when the model takes L seconds per page.

Three `python worker.py` processes, each allowed more pages at once than the book has,
so every page can be drawn at the same time: the ideal is makespan ≈ L. The old
BullMQ system needed about 9 x L for a 9-page book with one replica.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle

from bench.cpu import machine_busy_seconds
from bench.harness import rig
from bench.report import BenchResult, Cell, Column
from storywink import contract
from tests.support.worker_processes import page_identities

WORKERS = 3
CONCURRENCY = 30  # per worker: any one of them could take a whole 30-page book
CASES = ((9, 2.0), (30, 2.0), (9, 5.0), (30, 5.0))  # (pages, model latency L in s)
QUICK_CASES = ((9, 2.0), (30, 2.0))
WARM_UP_PAGES = 3
CORES = os.cpu_count() or 1
IDLE_SECONDS = 3.0


async def run(client: Client, quick: bool) -> BenchResult:
    result = BenchResult(
        name="makespan",
        title="Makespan of one book, fake model latency L",
        columns=[
            Column("pages", "pages"),
            Column("latency_s", "L (s)", ".1f"),
            Column("makespan_s", "makespan (s)", ".2f"),
            Column("makespan_over_latency", "makespan / L", ".2f"),
            Column("prepare_s", "prepare (s)", ".2f"),
            Column("to_first_call_s", "to 1st call (s)", ".2f"),
            Column("calls_spread_s", "calls spread (s)", ".2f"),
            Column("after_calls_s", "after calls (s)", ".2f"),
            Column("finalize_s", "finalize (s)", ".2f"),
            Column("to_client_s", "to client (s)", ".2f"),
            Column("machine_cpu_s", "machine CPU (s)", ".2f"),
            Column("cpu_over_cores_s", "CPU / cores (s)", ".2f"),
            Column("workers_used", "workers used"),
            Column("status", "book"),
        ],
        parameters={"workers": WORKERS, "illustration_concurrency": CONCURRENCY},
        notes=[
            "ideal makespan / L is 1; the old system needed ~9 x L for 9 pages (one replica)",
            "calls spread: first to last model call of the book (dispatch of the fan-out)",
            "the makespan in phases: prepare = run start to prepare done (a workflow task and "
            "the activity); to 1st call = prepare done to the first model call (a workflow task "
            "scheduling the pages, dispatch, the page's checks, photo and style fetches, the "
            "ledger row); after calls = last model call + L to the last page done (the draft, "
            "upload, record); finalize = last page done to the run closed; to client = the "
            "run closed to the client holding its result",
            "machine CPU: CPU seconds all cores spent busy during the book above their idle rate "
            "(measured for 3 s before, workers up): the workers, the Temporal server, the fakes "
            "in this process; / cores: the least wall time that work takes on this machine, to "
            "set beside makespan - L",
        ],
    )
    async with rig(client) as bench:
        with bench.workers(WORKERS, ILLUSTRATION_CONCURRENCY=CONCURRENCY) as workers:
            await bench.wait_for_workers(workers)
            await bench.illustrate(WARM_UP_PAGES, within=60)  # connections, caches
            idle_rate = await _idle_busy_rate()
            for pages, latency in QUICK_CASES if quick else CASES:
                bench.fakes.gemini.set_latency(latency)
                calls_before = bench.fakes.gemini.call_count
                busy_before = machine_busy_seconds()
                outcome, seconds, book_id = await bench.illustrate(pages, within=60 + 3 * latency)
                busy = machine_busy_seconds() - busy_before - idle_rate * seconds
                seen = time.time()
                wall = time.time() - time.monotonic()  # the fake's clock is monotonic
                arrivals = [wall + call.at for call in bench.fakes.gemini.requests[calls_before:]]
                handle = bench.client.get_workflow_handle(
                    contract.illustration_workflow_id(book_id)
                )
                used = len(await page_identities(handle))
                phases = await _phases(handle, arrivals, latency, seen)
                result.rows.append(
                    {
                        "pages": pages,
                        "latency_s": latency,
                        "makespan_s": round(seconds, 3),
                        "makespan_over_latency": round(seconds / latency, 3),
                        **phases,
                        "machine_cpu_s": round(busy, 2),
                        "cpu_over_cores_s": round(busy / CORES, 2),
                        "workers_used": used,
                        "status": outcome.status.value,
                    }
                )
    return result


async def _phases(
    handle: WorkflowHandle[object, object], calls: list[float], latency: float, seen: float
) -> dict[str, Cell]:
    """Where the makespan went, from the run's history and the fake's call times."""
    started = prepared = last_page = closed = 0.0
    scheduled: dict[int, str] = {}
    async for event in handle.fetch_history_events():
        at = _seconds(event.event_time.ToDatetime())
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            started = at
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            scheduled[event.event_id] = (
                event.activity_task_scheduled_event_attributes.activity_type.name
            )
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            name = scheduled.get(event.activity_task_completed_event_attributes.scheduled_event_id)
            if name == "prepare_illustration":
                prepared = at
            elif name == "illustrate_page":
                last_page = max(last_page, at)
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
            closed = at
    return {
        "prepare_s": round(prepared - started, 3),
        "to_first_call_s": round(min(calls) - prepared, 3),
        "calls_spread_s": round(max(calls) - min(calls), 3),
        "after_calls_s": round(last_page - (max(calls) + latency), 3),
        "finalize_s": round(closed - last_page, 3),
        "to_client_s": round(seen - closed, 3),
    }


async def _idle_busy_rate(seconds: float = IDLE_SECONDS) -> float:
    """CPU seconds per second the machine spends busy with no book running (the workers'
    polls, the server's timers, anything else)."""
    before = machine_busy_seconds()
    await asyncio.sleep(seconds)
    return (machine_busy_seconds() - before) / seconds


def _seconds(moment: datetime) -> float:
    """A history event's time (naive UTC) as seconds since the epoch."""
    return moment.replace(tzinfo=UTC).timestamp()
