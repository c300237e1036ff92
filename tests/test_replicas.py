"""Several worker processes on the same queues: the old system's failure (RC-1.3, RC-2.3,
RC-5.1: replicas competing and losing 6 of 9 jobs) cannot happen here."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from temporalio.api.enums.v1 import EventType, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client, WorkflowHandle

from storywink.config import Settings
from storywink.connections import Database
from storywink.pipeline import page_public_id
from storywink.shared import BookStatus
from tests.helpers import create_book, load_book, start
from tests.provider_fakes import Fakes, SettingsFactory, fakes, provider_settings

__all__ = ["fakes", "provider_settings"]
ROOT = Path(__file__).resolve().parent.parent


def worker_env(settings: Settings, fakes: Fakes, identity: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GEMINI", "GOOGLE"))}
    env.update(fakes.env(settings))
    env.update(
        {
            "TEMPORAL_ADDRESS": settings.temporal_address,
            "TEMPORAL_TASK_QUEUE": settings.temporal_task_queue,
            "TEMPORAL_ILLUSTRATION_TASK_QUEUE": settings.temporal_illustration_task_queue,
            "DATABASE_URL": settings.resolved_database_url,
            "ILLUSTRATION_CONCURRENCY": "3",
            "MODEL_TIMEOUT_SECONDS": "10",
            "PAGE_START_TO_CLOSE_SECONDS": "30",
            "PAGE_HEARTBEAT_TIMEOUT_SECONDS": "5",
            "PAGE_RETRY_INITIAL_SECONDS": "0.2",
            "SHUTDOWN_GRACE_SECONDS": "5",
            "WORKER_IDENTITY": identity,
            "NO_PROXY": "127.0.0.1,localhost",
        }
    )
    return env


@contextmanager
def worker_processes(
    settings: Settings, fakes: Fakes, count: int, log_dir: Path
) -> Iterator[list[subprocess.Popen[bytes]]]:
    processes = []
    for n in range(count):
        log = (log_dir / f"worker-{n}.log").open("wb")
        processes.append(
            subprocess.Popen(
                [sys.executable, str(ROOT / "worker.py")],
                cwd=log_dir,
                env=worker_env(settings, fakes, f"replica-{n}"),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    try:
        yield processes
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


async def wait_for_pollers(client: Client, queue: str, count: int) -> None:
    """Wait until `count` distinct workers poll the queue (they poll only once ready)."""
    request = DescribeTaskQueueRequest(
        namespace=client.namespace,
        task_queue=TaskQueue(name=queue),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
    )
    async with asyncio.timeout(60):
        while True:
            described = await client.workflow_service.describe_task_queue(request)
            if len({poller.identity for poller in described.pollers}) >= count:
                return
            await asyncio.sleep(0.3)


async def page_identities(handle: WorkflowHandle[object, object]) -> Counter[str]:
    """Which worker started each page activity, read from the workflow's history."""
    scheduled: dict[int, str] = {}
    started: Counter[str] = Counter()
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attrs = event.activity_task_scheduled_event_attributes
            scheduled[event.event_id] = attrs.activity_type.name
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            attrs2 = event.activity_task_started_event_attributes
            if scheduled.get(attrs2.scheduled_event_id) == "illustrate_page":
                started[attrs2.identity] += 1
    return started


async def test_three_replicas_draw_every_page_exactly_once(
    temporal_client: Client,
    database: Database,
    fakes: Fakes,
    provider_settings: SettingsFactory,
    tmp_path: Path,
) -> None:
    settings = provider_settings()
    fakes.gemini.set_latency(1.0)  # slow enough that one replica cannot take every page
    book_id = create_book(database, fakes.photo_urls("r9", 9))
    with worker_processes(settings, fakes, 3, tmp_path) as processes:
        await wait_for_pollers(temporal_client, settings.temporal_illustration_task_queue, 3)
        handle = await start(temporal_client, settings, book_id)
        outcome = await asyncio.wait_for(handle.result(), timeout=90)
        identities = await page_identities(handle)

    # SIGTERM: each replica stopped polling and exited cleanly within its grace period.
    assert [process.returncode for process in processes] == [0, 0, 0]
    assert outcome.status is BookStatus.COMPLETED
    assert sum(identities.values()) == 9  # nine page activities, none started twice
    assert len(identities) > 1, f"pages were not spread over replicas: {identities}"
    assert set(identities) <= {"replica-0", "replica-1", "replica-2"}
    assert fakes.gemini.call_count == 9
    _, pages, notes = load_book(database, book_id)
    assert all(page.model_calls == 1 for page in pages)
    for page in pages:
        assert fakes.cloudinary.uploads_of(page_public_id(book_id, page.page_number)) == 1
    assert len(notes) == 1
