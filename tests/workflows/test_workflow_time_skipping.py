"""The workflow's orchestration on the time-skipping server, where long timeouts matter.

Activities are replaced by fakes registered under the real activities' names, so the
production defaults (10 s backoff, 5 attempts, 5-minute start-to-close) run in moments.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType, IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from storywink import contract
from storywink.contract import (
    ActivityOptions,
    BookOutcome,
    BookStatus,
    FinalizeInput,
    IllustrationPlan,
    IllustrationRequest,
    ModerationStatus,
    NotificationType,
    PageFailure,
    PageResult,
    PageTask,
    PrepareInput,
    StyleSnapshot,
)
from storywink.illustration.styles import resolve_style
from tests.support.builders import page_tasks
from tests.support.services import tool_path
from workflows.book_illustration import BookIllustration

PRODUCTION_PAGE_OPTIONS = ActivityOptions(
    task_queue="",  # filled per test
    start_to_close_seconds=300,
    heartbeat_timeout_seconds=15,
    maximum_attempts=5,
    initial_interval_seconds=10,
    maximum_interval_seconds=300,
)


# One time-skipping server for the module: under xdist (--dist loadgroup) on one worker.
pytestmark = pytest.mark.xdist_group("time_skipping")


@pytest.fixture(scope="module")
async def skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=tool_path("temporal-test-server"),
        data_converter=contract.DATA_CONVERTER,
    )
    # The time-skipping server has no flag for them and no ListSearchAttributes (so the
    # worker's `ensure_search_attributes` cannot run here); the workflow upserts them.
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=env.client.namespace,
            search_attributes={
                key.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
                for key in contract.SEARCH_ATTRIBUTES
            },
        )
    )
    yield env
    await env.shutdown()


class FakeBook:
    """In-memory stand-ins for the database activities, recording every call."""

    def __init__(self, pages: int, queue: str) -> None:
        style: StyleSnapshot = resolve_style("vignette", "https://cdn.example/styles/")
        self.plan = IllustrationPlan(
            book_id="b1",
            user_id="u1",
            book_title="T",
            style=style,
            total_pages=pages,
            pages=page_tasks(style, pages),
            page_options=PRODUCTION_PAGE_OPTIONS.model_copy(update={"task_queue": queue}),
        )
        self.failures: list[PageFailure] = []
        self.finalized: list[FinalizeInput] = []
        self.attempts: Counter[int] = Counter()

    @activity.defn(name="prepare_illustration")
    async def prepare(self, request: PrepareInput) -> IllustrationPlan:
        return self.plan

    @activity.defn(name="record_page_failure")
    async def record_page_failure(self, failure: PageFailure) -> PageResult:
        self.failures.append(failure)
        return PageResult(
            page_id=failure.page_id,
            page_number=int(failure.page_id[1:]),
            moderation_status=ModerationStatus.FAILED,
            moderation_reason=failure.reason,
        )

    @activity.defn(name="finalize_book")
    async def finalize(self, request: FinalizeInput) -> BookOutcome:
        self.finalized.append(request)
        return BookOutcome(
            book_id=request.book_id,
            status=BookStatus.PARTIAL,
            pages_total=self.plan.total_pages,
            pages_with_image=0,
            pages_flagged=0,
            pages_failed=len(self.failures),
            notification_type=NotificationType.BOOK_PARTIAL,
        )


def short_heartbeat(fake: FakeBook) -> None:
    """A running activity's heartbeat timeout passes in real time, even here, and a
    cancellation reaches it with a heartbeat (sent at most every 0.8 x the timeout): 1 s
    instead of production's 15 s."""
    options = fake.plan.page_options.model_copy(update={"heartbeat_timeout_seconds": 1})
    fake.plan = fake.plan.model_copy(update={"page_options": options})


def ok(task: PageTask) -> PageResult:
    return PageResult(
        page_id=task.page_id,
        page_number=task.page_number,
        moderation_status=ModerationStatus.OK,
        generated_image_url=f"https://cdn.example/gen/{task.page_number}.png",
    )


def book_worker(
    env: WorkflowEnvironment, fake: FakeBook, queue: str, page_activity: Callable[..., Any]
) -> Worker:
    return Worker(
        env.client,
        task_queue=queue,
        workflows=[BookIllustration],
        activities=[fake.prepare, fake.record_page_failure, fake.finalize, page_activity],
    )


async def run_book(
    env: WorkflowEnvironment, fake: FakeBook, queue: str, page_activity: Callable[..., Any]
) -> BookOutcome:
    async with book_worker(env, fake, queue, page_activity):
        return await env.client.execute_workflow(
            BookIllustration.run,
            IllustrationRequest(book_id="b1"),
            id=f"wf-{uuid.uuid4()}",
            task_queue=queue,
        )


async def test_page_failing_every_attempt_is_recorded_failed_and_the_book_still_settles(
    skipping_env: WorkflowEnvironment,
) -> None:
    queue = f"ts-{uuid.uuid4()}"
    fake = FakeBook(pages=3, queue=queue)

    @activity.defn(name="illustrate_page")
    async def illustrate_page(task: PageTask) -> PageResult:
        fake.attempts[task.page_number] += 1
        if task.page_number == 2:
            raise ApplicationError("upload: HTTP 503 Service Unavailable")
        return ok(task)

    started = await skipping_env.get_current_time()
    outcome = await run_book(skipping_env, fake, queue, illustrate_page)
    elapsed = await skipping_env.get_current_time() - started

    assert fake.attempts == Counter({1: 1, 2: 5, 3: 1})
    assert [(f.page_id, f.reason) for f in fake.failures] == [
        ("p2", "upload: HTTP 503 Service Unavailable")
    ]
    assert len(fake.finalized) == 1 and not fake.finalized[0].cancelled
    assert outcome.status is BookStatus.PARTIAL
    # Exponential backoff from 10 s: 10 + 20 + 40 + 80 seconds of (skipped) waiting.
    assert elapsed.total_seconds() >= 150


async def test_page_hanging_past_its_timeout_is_retried(skipping_env: WorkflowEnvironment) -> None:
    queue = f"ts-{uuid.uuid4()}"
    fake = FakeBook(pages=2, queue=queue)
    short_heartbeat(fake)

    @activity.defn(name="illustrate_page")
    async def illustrate_page(task: PageTask) -> PageResult:
        fake.attempts[task.page_number] += 1
        if task.page_number == 1 and fake.attempts[1] == 1:
            await asyncio.sleep(3600)  # never heartbeats: the server times it out
        return ok(task)

    await run_book(skipping_env, fake, queue, illustrate_page)
    assert fake.attempts == Counter({1: 2, 2: 1})
    assert fake.failures == []
    assert len(fake.finalized) == 1


async def test_cancelling_a_run_stops_pages_and_settles_the_book(
    skipping_env: WorkflowEnvironment,
) -> None:
    queue = f"ts-{uuid.uuid4()}"
    fake = FakeBook(pages=3, queue=queue)
    short_heartbeat(fake)
    in_flight = asyncio.Event()
    stopped: list[int] = []

    @activity.defn(name="illustrate_page")
    async def illustrate_page(task: PageTask) -> PageResult:
        try:
            while True:
                activity.heartbeat()
                in_flight.set()
                await asyncio.sleep(0.1)
        except asyncio.CancelledError:
            stopped.append(task.page_number)
            raise

    async with book_worker(skipping_env, fake, queue, illustrate_page):
        handle = await skipping_env.client.start_workflow(
            BookIllustration.run,
            IllustrationRequest(book_id="b1"),
            id=f"wf-{uuid.uuid4()}",
            task_queue=queue,
        )
        await asyncio.wait_for(in_flight.wait(), 10)
        await handle.cancel()
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()

    assert isinstance(failure.value.cause, CancelledError)
    assert sorted(stopped) == [1, 2, 3]
    assert [f.cancelled for f in fake.finalized] == [True]


async def test_page_timing_out_on_every_attempt_is_failed_with_a_timeout_reason(
    skipping_env: WorkflowEnvironment,
) -> None:
    queue = f"ts-{uuid.uuid4()}"
    fake = FakeBook(pages=1, queue=queue)
    short_heartbeat(fake)

    @activity.defn(name="illustrate_page")
    async def illustrate_page(task: PageTask) -> PageResult:
        fake.attempts[task.page_number] += 1
        await asyncio.sleep(3600)  # a dead worker: no heartbeat, no answer
        return ok(task)

    await run_book(skipping_env, fake, queue, illustrate_page)
    assert fake.attempts == Counter({1: 5})
    assert [f.reason.split(":")[0] for f in fake.failures] == ["timeout"]
    assert fake.failures[0].reason == "timeout: no answer within the page's heartbeat timeout"


async def test_a_result_with_a_field_from_a_newer_worker_keeps_the_run_going(
    skipping_env: WorkflowEnvironment,
) -> None:
    """Rolling deploy: a newer worker's page activity answers with a field this workflow
    code does not know; the run goes on and settles."""
    queue = f"ts-{uuid.uuid4()}"
    fake = FakeBook(pages=2, queue=queue)

    @activity.defn(name="illustrate_page")
    async def illustrate_page(task: PageTask) -> dict[str, Any]:
        return {**ok(task).model_dump(mode="json"), "cost_micro_usd": 3900}

    outcome = await run_book(skipping_env, fake, queue, illustrate_page)

    assert outcome.status is BookStatus.PARTIAL  # FakeBook's finalize says so
    assert fake.failures == []


async def test_a_result_this_code_cannot_read_never_fails_the_run(
    skipping_env: WorkflowEnvironment,
) -> None:
    """A result missing a field this code needs fails the workflow task, which Temporal
    retries (for a worker that can read it), instead of failing the run for good."""
    queue = f"ts-{uuid.uuid4()}"
    fake = FakeBook(pages=1, queue=queue)

    @activity.defn(name="illustrate_page")
    async def illustrate_page(task: PageTask) -> dict[str, Any]:
        return {"page_id": task.page_id}

    async with book_worker(skipping_env, fake, queue, illustrate_page):
        handle = await skipping_env.client.start_workflow(
            BookIllustration.run,
            IllustrationRequest(book_id="b1"),
            id=f"wf-{uuid.uuid4()}",
            task_queue=queue,
        )
        task_failed = False
        for _ in range(100):
            events = [event.event_type async for event in handle.fetch_history_events()]
            task_failed = EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED in events
            if task_failed:
                break
            await asyncio.sleep(0.1)
        description = await handle.describe()
        await handle.terminate("test over")

    assert task_failed
    assert description.status is WorkflowExecutionStatus.RUNNING
    assert fake.finalized == []
