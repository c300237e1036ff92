"""Several worker processes on the same queues: replicas competing for a book's pages draw
each page exactly once and lose none (the system this replaces lost 6 of 9), and a replica
stopped with SIGTERM (a deploy, a scale-down) loses no page."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
from pathlib import Path

import pytest
from temporalio.client import WorkflowFailureError

from storywink.contract import BookStatus
from tests.support.helpers import wait_until
from tests.support.pipeline import Pipeline
from tests.support.provider_fakes import Fakes
from tests.support.worker_processes import (
    page_identities,
    wait_until_ready,
    worker_processes,
)

pytestmark = pytest.mark.process


@pytest.mark.each_database  # claims taken by three processes at once: the engine's locking
async def test_three_replicas_draw_every_page_exactly_once(
    fake_pipeline: Pipeline, fakes: Fakes, tmp_path: Path
) -> None:
    """Seed validation test 2 (multiple worker instances): 3 replicas, a 9-page book; all
    9 pages complete, spread over the replicas, each drawn once."""
    fakes.gemini.set_latency(1.0)  # slow enough that one replica cannot take every page
    book_id = fake_pipeline.book(9, photos="r9")
    with worker_processes(fake_pipeline.settings, fakes, 3, tmp_path) as replicas:
        await wait_until_ready(replicas)
        handle = await fake_pipeline.start(book_id)
        outcome = await asyncio.wait_for(handle.result(), timeout=90)
        identities = await page_identities(handle)
        # SIGTERM with nothing in flight: each replica stops within its grace period.
        for replica in replicas:
            replica.signal(signal.SIGTERM)
        codes = [await replica.exit_code(within=15) for replica in replicas]

    assert codes == [0, 0, 0]
    assert outcome.status is BookStatus.COMPLETED
    assert sum(identities.values()) == 9  # nine page activities, none started twice
    assert len(identities) > 1, f"pages were not spread over replicas: {identities}"
    assert set(identities) <= {"replica-0", "replica-1", "replica-2"}
    assert fakes.gemini.call_count == 9
    _, pages, notes = fake_pipeline.load(book_id)
    assert all(page.model_calls == 1 for page in pages)
    for page in pages:
        assert fakes.cloudinary.uploads_of(fake_pipeline.picture_id(book_id, page.page_number)) == 1
    assert len(notes) == 1


@pytest.mark.parametrize(
    ("grace", "in_flight_finish"),
    [
        pytest.param(6.0, True, id="pages-finish-in-grace"),
        pytest.param(0.3, False, id="handed-back"),
    ],
)
async def test_sigterm_stops_polling_and_loses_no_page(
    fake_pipeline: Pipeline, fakes: Fakes, tmp_path: Path, grace: float, in_flight_finish: bool
) -> None:
    """SIGTERM to a replica holding 3 pages while 3 more wait in the queue: it takes no new
    page, and its in-flight pages either finish within SHUTDOWN_GRACE_SECONDS or are handed
    back and drawn by the other replica. The book completes, every page stored once."""
    latency = 2.5
    fakes.gemini.set_latency(latency)
    book_id = fake_pipeline.book(9, photos="term")
    env = {"SHUTDOWN_GRACE_SECONDS": str(grace)}  # 3 pages at a time per replica
    with worker_processes(fake_pipeline.settings, fakes, 2, tmp_path, env) as replicas:
        leaving, staying = replicas
        await wait_until_ready(replicas)
        handle = await fake_pipeline.start(book_id)
        # Six model calls in flight (3 per replica): three pages still wait in the queue.
        await wait_until(lambda: fakes.gemini.call_count >= 6)
        signalled = time.monotonic()
        leaving.signal(signal.SIGTERM)
        code = await leaving.exit_code(within=grace + 5)
        stopped_after = time.monotonic() - signalled
        outcome = await asyncio.wait_for(handle.result(), timeout=60)
        identities = await page_identities(handle)

    assert code == 0
    assert stopped_after < grace + 4, f"stopped {stopped_after:.1f}s after SIGTERM"
    assert outcome.status is BookStatus.COMPLETED
    _, pages, notes = fake_pipeline.load(book_id)
    for page in pages:
        assert fakes.cloudinary.uploads_of(fake_pipeline.picture_id(book_id, page.page_number)) == 1
    assert len(notes) == 1
    if in_flight_finish:
        # Its three pages were finished by it; the queued ones all went to the other.
        assert identities == {leaving.identity: 3, staying.identity: 6}
        assert fakes.gemini.call_count == 9
    else:
        # Its three pages came back unfinished and were drawn again by the other replica.
        assert identities == {staying.identity: 9}
        assert fakes.gemini.call_count == 12
        assert sorted(page.model_calls for page in pages) == [1] * 6 + [2] * 3


@pytest.mark.parametrize("cancelled_run", [True, False], ids=["after-cancelled-run", "idle"])
async def test_sigterm_exits_within_the_grace_period_with_a_rate_limit(
    fake_pipeline: Pipeline, fakes: Fakes, tmp_path: Path, cancelled_run: bool
) -> None:
    """A worker with ILLUSTRATION_RATE_LIMIT (the bench's quota runs), SIGTERM'd after its
    run was cancelled and ended, exits 0 within SHUTDOWN_GRACE_SECONDS + 5 s.

    It used to hang for good after `asyncio.run` had returned, in the interpreter's
    finalization: the garbage collector dropped the Temporal SDK's core runtime (its Tokio
    shutdown waits for its threads, with the GIL held) while the runtime's thread forwarding
    core logs to Python logging was parked taking the GIL (gdb: `BlockingPool::drop` on the
    main thread, pyo3 `HangThread` under the log forwarder). It needed core log lines at exit,
    such as the warnings for pages of the cancelled run finishing after it ended; it did so
    with or without the rate limit, and never for an idle worker. worker.py now ends the
    process with `os._exit` after its own orderly shutdown."""
    fakes.gemini.set_latency(0.5)
    grace = 2.0
    env = {"ILLUSTRATION_RATE_LIMIT": "120", "SHUTDOWN_GRACE_SECONDS": str(grace)}
    with worker_processes(fake_pipeline.settings, fakes, 1, tmp_path, env) as (replica,):
        await wait_until_ready([replica])
        if cancelled_run:
            book_id = fake_pipeline.book(12, photos="cancel")
            handle = await fake_pipeline.start(book_id)
            await wait_until(lambda: fakes.gemini.call_count >= 3)
            await handle.cancel()
            with contextlib.suppress(WorkflowFailureError):
                await asyncio.wait_for(handle.result(), timeout=30)
        signalled = time.monotonic()
        replica.signal(signal.SIGTERM)
        try:
            code = await replica.exit_code(within=grace + 5)
        except subprocess.TimeoutExpired:
            replica.process.kill()
            pytest.fail(f"still running {grace + 5:g}s after SIGTERM")
        stopped_after = time.monotonic() - signalled

    log = replica.log.read_text()
    assert code == 0, log[-3000:]
    assert stopped_after < grace + 5, f"stopped {stopped_after:.1f}s after SIGTERM"
    assert "exiting now" not in log  # an orderly stop, not worker.py's backstop timer
