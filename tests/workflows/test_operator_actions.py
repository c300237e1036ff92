"""What an operator does from the Web UI or the `temporal` CLI leaves the book settled.

Reset, pause, cancel, bad starts and data the database refuses, each through the real
dev server and the real `temporal` CLI, on SQLite and PostgreSQL. Pages are held at a
chosen step (tests/support/gated_providers.py) so the action lands exactly there.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from sqlalchemy import delete, select
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle

from storywink import contract
from storywink.config import Settings
from storywink.contract import BookOutcome, BookStatus, ModerationStatus
from storywink.db.connection import Database
from storywink.db.models import Book, Notification, Page
from storywink.providers.factory import build_providers
from tests.support.gated_providers import Gate, GatedIllustrator, StoredThenHeldStore
from tests.support.helpers import (
    keep_history,
    load_book,
    model_calls,
    recorded,
    temporal_cli,
    wait_until,
)
from tests.support.pipeline import Pipeline


async def reset_workflow(settings: Settings, workflow_id: str, reset_to: str) -> None:
    await temporal_cli(
        settings,
        "workflow", "reset", "--workflow-id", workflow_id, "--type", reset_to,
        "--reason", "operator test",
    )  # fmt: skip


@asynccontextmanager
async def gated_worker(
    pipeline: Pipeline,
    *,
    in_model_call: Gate | None = None,
    after_upload: Gate | None = None,
) -> AsyncIterator[None]:
    providers = build_providers(pipeline.settings)
    if in_model_call is not None:
        providers = dataclasses.replace(
            providers, illustrator=GatedIllustrator(providers.illustrator, in_model_call)
        )
    if after_upload is not None:
        providers = dataclasses.replace(
            providers, store=StoredThenHeldStore(providers.store, after_upload)
        )
    async with pipeline.worker(providers):
        yield


def page_states(database: Database, book_id: str) -> list[tuple[ModerationStatus, str | None]]:
    _, pages, _ = load_book(database, book_id)
    return [(page.moderation_status, page.moderation_reason) for page in pages]


async def settled_book(database: Database, book_id: str) -> tuple[Book, list[Notification]]:
    await wait_until(lambda: load_book(database, book_id)[0].status != BookStatus.ILLUSTRATING)
    book, _, notes = load_book(database, book_id)
    return book, notes


# -- reset -------------------------------------------------------------------------------


@pytest.mark.parametrize("reset_to", ["LastWorkflowTask", "FirstWorkflowTask"])
async def test_reset_of_a_running_run_settles_the_book_and_draws_no_stored_page_again(
    pipeline: Pipeline, reset_to: str
) -> None:
    """Page 1 is recorded; pages 2 and 3 are stored on the CDN but not yet recorded when
    the operator resets. The new run finishes the book without calling the model again."""
    book_id = pipeline.book(3)
    stored = Gate(held={2, 3})
    async with gated_worker(pipeline, after_upload=stored):
        handle = await pipeline.start(book_id)
        await wait_until(lambda: stored.waiting(2, 3) and recorded(pipeline.database, book_id, 1))

        await reset_workflow(pipeline.settings, handle.id, reset_to)
        stored.release()
        latest = pipeline.client.get_workflow_handle(handle.id, result_type=BookOutcome)
        outcome = await asyncio.wait_for(latest.result(), timeout=30)

    book, notes = await settled_book(pipeline.database, book_id)
    assert outcome.status is BookStatus.COMPLETED
    assert book.status is BookStatus.COMPLETED
    assert [n.type.value for n in notes] == ["BOOK_COMPLETED"]
    assert model_calls(pipeline.database, book_id) == [1, 1, 1]
    assert (await latest.describe()).run_id != handle.result_run_id  # it was reset
    await keep_history(latest, f"reset_running_to_{reset_to}")


@pytest.mark.parametrize(
    ("reset_to", "ends"),
    [("LastWorkflowTask", "completed"), ("FirstWorkflowTask", "refused: book is COMPLETED")],
)
async def test_reset_of_a_finished_run_changes_nothing_in_the_book(
    pipeline: Pipeline, reset_to: str, ends: str
) -> None:
    book_id = pipeline.book(2)
    async with pipeline.worker():
        handle = await pipeline.start(book_id)
        await handle.result()
        before = pipeline.load(book_id)

        await reset_workflow(pipeline.settings, handle.id, reset_to)
        latest = pipeline.client.get_workflow_handle(handle.id, result_type=BookOutcome)
        if ends == "completed":
            assert (await asyncio.wait_for(latest.result(), 30)).status is BookStatus.COMPLETED
        else:
            with pytest.raises(WorkflowFailureError) as failure:
                await asyncio.wait_for(latest.result(), 30)
            assert "is COMPLETED" in str(failure.value.cause.__cause__)

    book, pages, notes = pipeline.load(book_id)
    assert book.status is BookStatus.COMPLETED
    assert [p.generated_image_url for p in pages] == [p.generated_image_url for p in before[1]]
    assert len(notes) == 1
    assert model_calls(pipeline.database, book_id) == [1, 1]


# -- pause -------------------------------------------------------------------------------


async def _pending_page_activity(handle: WorkflowHandle[object, BookOutcome]) -> str:
    description = await handle.describe()
    pending = [
        a
        for a in description.raw_description.pending_activities
        if a.activity_type.name == "illustrate_page"
    ]
    assert len(pending) == 1
    return pending[0].activity_id


async def _is_paused(handle: WorkflowHandle[object, BookOutcome]) -> bool:
    description = await handle.describe()
    return any(a.paused for a in description.raw_description.pending_activities)


async def test_pausing_a_page_during_its_model_call_costs_no_second_call_nor_an_attempt(
    pipeline: Pipeline,
) -> None:
    book_id = pipeline.book(1)
    in_call = Gate(held={1})
    async with gated_worker(pipeline, in_model_call=in_call):
        handle = await pipeline.start(book_id)
        await wait_until(lambda: in_call.waiting(1))
        activity_id = await _pending_page_activity(handle)

        await temporal_cli(
            pipeline.settings, "activity", "pause", "--workflow-id", handle.id,
            "--activity-id", activity_id, "--reason", "operator test",
        )  # fmt: skip
        deadline = asyncio.get_running_loop().time() + 10
        while not await _is_paused(handle):
            assert asyncio.get_running_loop().time() < deadline, "the pause never took"
            await asyncio.sleep(0.1)
        # The worker learns of the pause from its next heartbeat; let it.
        await asyncio.sleep(pipeline.settings.page_heartbeat_timeout_seconds / 2)
        in_call.release()
        outcome = await asyncio.wait_for(handle.result(), timeout=30)

    assert outcome.status is BookStatus.COMPLETED
    assert model_calls(pipeline.database, book_id) == [1]
    assert in_call.reached[1] == 1
    assert await _page_attempts(handle) == [1]


async def _page_attempts(handle: WorkflowHandle[object, BookOutcome]) -> list[int]:
    attempts = []
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            attempts.append(event.activity_task_started_event_attributes.attempt)
    return attempts[1:-1]  # prepare first, finalize last


# -- cancel ------------------------------------------------------------------------------


async def test_cancel_settles_the_book_with_its_own_wording_and_each_page_says_where_it_stopped(
    pipeline: Pipeline,
) -> None:
    """One page slot: the first page is drawn, the second is in its model call, the
    third waits for the slot when the run is cancelled."""
    book_id = pipeline.book(3)
    in_call = Gate(pass_first=1)
    one_slot = pipeline.with_settings(illustration_concurrency=1)
    async with gated_worker(one_slot, in_model_call=in_call):
        handle = await one_slot.start(book_id)
        await wait_until(lambda: sum(in_call.reached.values()) == 2)
        await handle.cancel()
        with pytest.raises(WorkflowFailureError):
            await asyncio.wait_for(handle.result(), timeout=30)

    assert (await handle.describe()).status is WorkflowExecutionStatus.CANCELED
    await keep_history(handle, "cancelled")
    book, notes = await settled_book(pipeline.database, book_id)
    assert book.status is BookStatus.PARTIAL
    drawn, in_model_call = in_call.reached
    never_started = ({1, 2, 3} - {drawn, in_model_call}).pop()
    states = page_states(pipeline.database, book_id)
    cancelled = "cancelled: the illustration run was cancelled"
    assert states[drawn - 1] == (ModerationStatus.OK, None)
    assert states[in_model_call - 1] == (ModerationStatus.FAILED, f"{cancelled} during generate")
    assert states[never_started - 1] == (
        ModerationStatus.FAILED,
        f"{cancelled} before this page was started",
    )
    [note] = notes
    assert note.title.endswith("was stopped")
    assert "1 of 3 pages are illustrated" in note.message


# -- bad starts --------------------------------------------------------------------------


@pytest.mark.parametrize("inputs", [[], ['{"book_id": "a"}', '{"book_id": "b"}']])
async def test_a_cli_start_without_one_input_fails_within_seconds(
    pipeline: Pipeline, inputs: list[str]
) -> None:
    workflow_id = f"bad-start-{len(inputs)}-{pipeline.settings.temporal_task_queue}"
    async with pipeline.worker():
        await temporal_cli(
            pipeline.settings, "workflow", "start", "--type", contract.BOOK_ILLUSTRATION_WORKFLOW,
            "--task-queue", pipeline.settings.temporal_task_queue, "--workflow-id", workflow_id,
            *(arg for payload in inputs for arg in ("--input", payload)),
        )  # fmt: skip
        handle = pipeline.client.get_workflow_handle(workflow_id)
        with pytest.raises(WorkflowFailureError) as failure:
            await asyncio.wait_for(handle.result(), timeout=15)
    message = str(failure.value.cause)
    assert f'takes one input, {{"book_id": "..."}}; it was given {len(inputs)}' in message


# -- errors that can never succeed ---------------------------------------------------------


@pytest.mark.each_database  # foreign keys differ
async def test_a_book_deleted_mid_run_ends_the_run_at_once_with_a_short_reason(
    pipeline: Pipeline,
) -> None:
    book_id = pipeline.book(2)
    in_call = Gate(held={1, 2})
    async with gated_worker(pipeline, in_model_call=in_call):
        handle = await pipeline.start(book_id)
        await wait_until(lambda: in_call.waiting(1, 2))
        with pipeline.database.sessions() as session:
            session.execute(delete(Page).where(Page.book_id == book_id))
            session.execute(delete(Book).where(Book.id == book_id))
            session.commit()
        in_call.release()
        with pytest.raises(WorkflowFailureError) as failure:
            await asyncio.wait_for(handle.result(), timeout=20)

    message = str(failure.value.cause.__cause__)
    assert f"book {book_id} not found" in message
    assert len(message) < 300


@pytest.mark.postgresql_only  # SQLite does not enforce column lengths
async def test_data_the_database_refuses_fails_the_run_at_once_with_a_short_reason(
    pipeline: Pipeline,
) -> None:
    """A workflow id longer than the claim's column: PostgreSQL refuses the value."""
    book_id = pipeline.book(1)
    workflow_id = f"ops-{'x' * 250}"
    async with pipeline.worker():
        handle = await pipeline.client.start_workflow(
            contract.BOOK_ILLUSTRATION_WORKFLOW,
            {"book_id": book_id},
            id=workflow_id,
            task_queue=pipeline.settings.temporal_task_queue,
        )
        with pytest.raises(WorkflowFailureError) as failure:
            await asyncio.wait_for(handle.result(), timeout=15)

    message = str(failure.value.cause.__cause__)
    assert "database rejected the data" in message
    assert "value too long" in message
    assert len(message) < 300 and "SELECT" not in message and "UPDATE" not in message
    book, _, _ = pipeline.load(book_id)
    assert book.status is BookStatus.STORY_READY  # the claim was never taken


# -- finding a book's runs ------------------------------------------------------------------


async def test_every_run_of_a_book_is_found_by_its_book_id_owner_and_outcome(
    pipeline: Pipeline,
) -> None:
    book_id = pipeline.book(1)
    async with pipeline.worker():
        ours = await pipeline.start(book_id)
        await ours.result()
        with pipeline.database.sessions() as session:
            session.get_one(Book, book_id).status = BookStatus.PARTIAL
            session.commit()
        theirs = await pipeline.client.start_workflow(
            contract.BOOK_ILLUSTRATION_WORKFLOW,
            {"book_id": book_id},
            id=f"ops-rerun-{book_id}",
            task_queue=pipeline.settings.temporal_task_queue,
        )
        await theirs.result()

    async def found(query: str) -> set[str]:
        return {w.id async for w in pipeline.client.list_workflows(query)}

    both = {ours.id, theirs.id}
    queries = [
        f"BookId = '{book_id}'",
        f"BookId = '{book_id}' AND BookUserId = 'user-1'",
        f"BookId = '{book_id}' AND BookOutcome = 'COMPLETED'",
    ]
    for query in queries:
        deadline = asyncio.get_running_loop().time() + 10
        while await found(query) != both:
            assert asyncio.get_running_loop().time() < deadline, query
            await asyncio.sleep(0.2)
    with pipeline.database.sessions() as session:
        notes = session.scalars(select(Notification).where(Notification.book_id == book_id))
        assert len(list(notes)) == 2
