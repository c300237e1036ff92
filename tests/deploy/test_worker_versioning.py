"""Worker versioning on the real dev server: a new version takes new books, the books in
flight finish on the version they started on (docs/deploying.md).

v1 workers hold a book's page in the model call; v2 workers, running a changed workflow
(an extra first step), join the same Worker Deployment; the real `temporal` CLI makes v2
current. The held book finishes on v1, a new book runs on v2, every page drawn once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.common import VersioningBehavior

# The sandbox re-imports this module for BookIllustrationV2; none of these run in it.
with workflow.unsafe.imports_passed_through():
    from storywink import contract
    from storywink.config import ConfigurationError, Settings, load_settings
    from storywink.contract import BookOutcome, BookStatus
    from storywink.db.connection import Database
    from storywink.providers.factory import build_providers
    from storywink.worker.assembly import build_workers
    from tests.support.gated_providers import Gate, GatedIllustrator
    from tests.support.helpers import (
        model_calls,
        recorded,
        start,
        temporal_cli,
        wait_until,
    )
    from tests.support.pipeline import Pipeline
    from workflows.book_illustration import BookIllustration


@workflow.defn(name=contract.BOOK_ILLUSTRATION_WORKFLOW)
class BookIllustrationV2(BookIllustration):
    """v2: a new first step that v1's histories lack. Unguarded, so a v1 run replayed on
    this code would fail with a nondeterminism error: pinning is what keeps it safe."""

    @workflow.run
    async def run(self, *inputs: object) -> BookOutcome:
        await workflow.sleep(0.1)
        return await super().run(*inputs)


def test_a_deployment_name_needs_a_build_id() -> None:
    with pytest.raises(ConfigurationError, match="WORKER_DEPLOYMENT_NAME needs WORKER_BUILD_ID"):
        load_settings(worker_deployment_name="storywink")
    with pytest.raises(ConfigurationError, match="WORKER_BUILD_ID needs WORKER_DEPLOYMENT_NAME"):
        load_settings(worker_build_id="v1")
    assert load_settings(worker_deployment_name="storywink", worker_build_id="v1").worker_build_id


def as_version(settings: Settings, deployment: str, build_id: str) -> Settings:
    return settings.model_copy(
        update={"worker_deployment_name": deployment, "worker_build_id": build_id}
    )


@asynccontextmanager
async def version_worker(
    client: Client,
    settings: Settings,
    database: Database,
    book_workflow: type[BookIllustration],
    gate: Gate | None = None,
) -> AsyncIterator[None]:
    providers = build_providers(settings)
    if gate is not None:
        providers = dataclasses.replace(
            providers, illustrator=GatedIllustrator(providers.illustrator, gate)
        )
    async with AsyncExitStack() as stack:
        for worker in build_workers(
            client, settings, database, providers, book_workflow=book_workflow
        ):
            await stack.enter_async_context(worker)
        yield
    await providers.aclose()


async def make_current(settings: Settings, deployment: str, build_id: str) -> None:
    """`set-current-version`, as an operator runs it. The server refuses a version until it
    has seen that version's workers poll every task queue of the deployment; retry until."""
    deadline = time.monotonic() + 15
    while True:
        done = await temporal_cli(
            settings,
            "worker", "deployment", "set-current-version",
            "--deployment-name", deployment, "--build-id", build_id, "--yes",
            check=False,
        )  # fmt: skip
        if done.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"set-current-version {build_id}: {done.stderr}")
        await asyncio.sleep(0.2)


async def running_on(settings: Settings, version: str) -> int:
    query = f"TemporalWorkerDeploymentVersion='{version}' AND ExecutionStatus='Running'"
    counted = await temporal_cli(settings, "workflow", "count", "--query", query)
    return int(counted.stdout.split("Total:")[1].split()[0])


async def build_ids_of_workflow_tasks(handle: WorkflowHandle[object, BookOutcome]) -> set[str]:
    history = await handle.fetch_history()
    return {
        event.workflow_task_completed_event_attributes.deployment_version.build_id
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
    }


async def timers_of(handle: WorkflowHandle[object, BookOutcome]) -> int:
    history = await handle.fetch_history()
    return sum(1 for e in history.events if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED)


async def test_a_new_version_takes_new_books_and_books_in_flight_finish_on_theirs(
    pipeline: Pipeline,
) -> None:
    deployment = f"storywink-test-{uuid.uuid4().hex[:8]}"
    v1 = as_version(pipeline.settings, deployment, "v1")
    v2 = as_version(pipeline.settings, deployment, "v2")
    in_flight = pipeline.book(2, photos="photos/a")
    after_switch = pipeline.book(2, photos="photos/b")
    held = Gate(held={2})

    async with version_worker(pipeline.client, v1, pipeline.database, BookIllustration, held):
        await make_current(v1, deployment, "v1")
        first = await start(pipeline.client, v1, in_flight)
        await wait_until(lambda: held.waiting(2) and recorded(pipeline.database, in_flight, 1))

        async with version_worker(pipeline.client, v2, pipeline.database, BookIllustrationV2):
            await make_current(v2, deployment, "v2")
            second = await start(pipeline.client, v2, after_switch)
            # Finishes while v1 still holds page 2 of the first book: the new book's
            # pages, page 2 included, went to v2's page workers, not to v1's.
            second_outcome = await asyncio.wait_for(second.result(), timeout=15)
            # The query docs/deploying.md gives for "may v1's workers stop yet?"
            assert await running_on(v1, f"{deployment}:v1") == 1

            held.release()
            first_outcome = await asyncio.wait_for(first.result(), timeout=15)

    assert first_outcome.status is BookStatus.COMPLETED
    assert second_outcome.status is BookStatus.COMPLETED
    for book_id in (in_flight, after_switch):
        assert pipeline.load(book_id)[0].status is BookStatus.COMPLETED
        assert model_calls(pipeline.database, book_id) == [1, 1]
    assert held.reached[2] == 1
    assert await build_ids_of_workflow_tasks(first) == {"v1"}
    assert await build_ids_of_workflow_tasks(second) == {"v2"}
    assert await timers_of(first) == 0
    assert await timers_of(second) == 1
    info = (await first.describe()).raw_description.workflow_execution_info.versioning_info
    assert info.behavior == VersioningBehavior.PINNED.value
    assert info.deployment_version.build_id == "v1"
