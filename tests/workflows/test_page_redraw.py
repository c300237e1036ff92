"""A parent's redraw of one page, through the real dev server, worker and database."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select
from temporalio.client import WorkflowFailureError

from storywink import contract
from storywink.book.refusals import BookBusy, NoSuchPage, RedrawNotReady
from storywink.contract import BookStatus, ModerationStatus, NotificationType, RedrawOutcome
from storywink.db.connection import Database
from storywink.db.models import ModelCall
from storywink.providers.factory import build_providers
from storywink.providers.local_storage import LocalImageStore
from tests.support.gated_providers import Gate, GatedIllustrator, StoredThenHeldStore
from tests.support.helpers import (
    keep_history,
    temporal_cli,
    wait_until,
)
from tests.support.pipeline import Pipeline


@asynccontextmanager
async def worker_holding(pipeline: Pipeline, gate: Gate) -> AsyncIterator[None]:
    """A worker whose model call waits at `gate` for the gate's pages."""
    providers = build_providers(pipeline.settings)
    providers = dataclasses.replace(
        providers, illustrator=GatedIllustrator(providers.illustrator, gate)
    )
    async with pipeline.worker(providers):
        yield


def model_calls(database: Database, book_id: str) -> int:
    with database.sessions() as session:
        count = session.scalar(select(func.count()).where(ModelCall.book_id == book_id))
        return int(count or 0)


async def partial_book(pipeline: Pipeline) -> tuple[str, Path]:
    """A three-page book illustrated PARTIAL: page 2's photo was missing, so it FAILED.
    The photo is back afterwards (the path returned)."""
    urls = pipeline.photos("photos", 3)
    kept = remove_file(urls[1])
    book_id = pipeline.book(urls)
    outcome = await pipeline.illustrate(book_id)
    assert outcome.status is BookStatus.PARTIAL
    file_of(urls[1]).write_bytes(kept)
    return book_id, file_of(urls[1])


def file_of(url: str) -> Path:
    return Path(url.removeprefix("file://"))


def remove_file(url: str) -> bytes:
    """Delete the file at `url`; what it held."""
    data = file_of(url).read_bytes()
    file_of(url).unlink()
    return data


@pytest.mark.each_database  # the claim and the version are rows of each database
async def test_redrawing_a_failed_page_completes_a_partial_book_with_one_notification(
    pipeline: Pipeline,
) -> None:
    book_id, _ = await partial_book(pipeline)
    _, before, notes_before = pipeline.load(book_id)
    assert before[1].moderation_status is ModerationStatus.FAILED
    calls_before = model_calls(pipeline.database, book_id)
    client = pipeline.illustration_client()

    async with pipeline.worker():
        run = await client.redraw_page(book_id, 2, note="  make the dog brown ")
        outcome = await client.wait_for_redraw(book_id)
    await keep_history(
        pipeline.client.get_workflow_handle(run.workflow_id), "redraw_completed_partial_book"
    )

    assert run.workflow_id == contract.page_redraw_workflow_id(book_id)
    assert outcome.book.status is BookStatus.COMPLETED
    assert [page.page_number for page in outcome.redrawn] == [2]
    book, pages, notes = pipeline.load(book_id)
    assert book.status is BookStatus.COMPLETED and book.claim_run_id is None
    page = pages[1]
    assert (page.moderation_status, page.moderation_reason) == (ModerationStatus.OK, None)
    assert (page.image_version, page.change_request) == (1, "make the dog brown")
    assert page.generated_asset_id == pipeline.picture_id(book_id, 2, 1)
    assert model_calls(pipeline.database, book_id) == calls_before + 1  # one call for one page
    new_notes = [n for n in notes if n.id not in {old.id for old in notes_before}]
    assert [n.type for n in new_notes] == [NotificationType.BOOK_COMPLETED]
    assert [p.image_version for p in pages] == [0, 1, 0]  # the other pages untouched


async def test_a_redrawn_page_keeps_its_old_picture_until_the_new_one_is_recorded(
    pipeline: Pipeline,
) -> None:
    book_id = pipeline.book(2)
    assert (await pipeline.illustrate(book_id)).status is BookStatus.COMPLETED
    old_id = pipeline.load(book_id)[1][1].generated_asset_id
    assert old_id == pipeline.picture_id(book_id, 2)
    client = pipeline.illustration_client()
    gate = Gate(held={2})

    async with worker_holding(pipeline, gate):
        await client.redraw_page(book_id, 2, note="a red balloon")
        await wait_until(lambda: gate.waiting(2))
        during = pipeline.load(book_id)[1][1]
        gate.release()
        outcome = await client.wait_for_redraw(book_id)

    assert (during.moderation_status, during.generated_asset_id) == (ModerationStatus.OK, old_id)
    after = pipeline.load(book_id)[1][1]
    # A new asset, no cache hit.
    assert after.generated_asset_id == pipeline.picture_id(book_id, 2, 1) != old_id
    old_file = LocalImageStore(pipeline.settings.storage_dir).path_for(old_id)
    assert old_file.is_file()  # the old version is not overwritten
    assert outcome.book.status is BookStatus.COMPLETED


async def test_a_redraw_that_fails_leaves_the_page_as_it_was_and_says_why(
    pipeline: Pipeline,
) -> None:
    urls = pipeline.photos("photos", 2)
    book_id = pipeline.book(urls)
    await pipeline.illustrate(book_id)
    old = pipeline.load(book_id)[1][1]
    remove_file(urls[1])  # the photo is gone: fetching it fails
    client = pipeline.illustration_client()

    async with pipeline.worker():
        await client.redraw_page(book_id, 2)
        outcome = await client.wait_for_redraw(book_id)

    page = pipeline.load(book_id)[1][1]
    assert (page.moderation_status, page.generated_asset_id) == (
        ModerationStatus.OK,
        old.generated_asset_id,
    )
    assert page.redraw_problem is not None and page.redraw_problem.startswith("fetch photo")
    assert outcome.book.status is BookStatus.COMPLETED
    assert outcome.redrawn[0].moderation_status is ModerationStatus.OK


async def test_two_clicks_on_a_page_give_one_drawing_and_another_page_joins_the_run(
    pipeline: Pipeline,
) -> None:
    book_id = pipeline.book(4)
    await pipeline.illustrate(book_id)
    calls_before = model_calls(pipeline.database, book_id)
    _, _, notes_before = pipeline.load(book_id)
    client = pipeline.illustration_client()
    gate = Gate(held={2, 3})

    async with worker_holding(pipeline, gate):
        first, again = await asyncio.gather(
            client.redraw_page(book_id, 2), client.redraw_page(book_id, 2, note="smile")
        )
        await wait_until(lambda: gate.waiting(2))
        third = await client.redraw_page(book_id, 3)
        await wait_until(lambda: gate.waiting(3))
        gate.release()
        outcome = await client.wait_for_redraw(book_id)
    await keep_history(
        pipeline.client.get_workflow_handle(first.workflow_id), "redraw_joined_by_a_second_page"
    )

    assert first.run_id == again.run_id == third.run_id  # one run for the book
    history = await pipeline.client.get_workflow_handle(first.workflow_id).fetch_history()
    scheduled = [
        event.activity_task_scheduled_event_attributes
        for event in history.events
        if event.HasField("activity_task_scheduled_event_attributes")
        and event.activity_task_scheduled_event_attributes.activity_type.name == "illustrate_page"
    ]
    # Through the same page work as a book's pages: the quota's queue, fair between parents.
    assert [s.priority.fairness_key for s in scheduled] == ["user-1", "user-1"]
    assert {s.task_queue.name for s in scheduled} == {
        pipeline.settings.temporal_illustration_task_queue
    }
    assert [page.page_number for page in outcome.redrawn] == [2, 3]
    assert gate.reached[2] == 1  # the second click did not draw page 2 again
    assert model_calls(pipeline.database, book_id) == calls_before + 2
    _, pages, notes = pipeline.load(book_id)
    assert [p.image_version for p in pages] == [0, 1, 1, 0]
    assert len(notes) == len(notes_before) + 1  # settled once, for both pages


async def test_a_redraw_is_refused_while_another_run_holds_the_book_and_blocks_one(
    pipeline: Pipeline,
) -> None:
    book_id = pipeline.book(2)
    await pipeline.illustrate(book_id)
    client = pipeline.illustration_client()
    gate = Gate(held={1, 2})

    async with worker_holding(pipeline, gate):
        # The redraw holds the book: an illustration is refused, not joined to it.
        await client.redraw_page(book_id, 1)
        await wait_until(lambda: gate.waiting(1))
        with pytest.raises(BookBusy, match="page-redraw-"):
            await client.start_illustration(book_id)  # the redraw holds it
        gate.release()
        await client.wait_for_redraw(book_id)

    story_ready = pipeline.book(2, photos="p2")
    with pytest.raises(RedrawNotReady, match="STORY_READY; a redraw needs a COMPLETED or PARTIAL"):
        await client.redraw_page(story_ready, 1)
    with pytest.raises(NoSuchPage, match="has no page 7 \\(it has 2\\)"):
        await client.redraw_page(book_id, 7)
    with pytest.raises(ValidationError, match="at most 500 characters"):
        await client.redraw_page(book_id, 1, note="x" * 501)

    # An illustration run holding the book refuses a redraw.
    gate = Gate(held={2})
    retry = pipeline.book(2, photos="p3")
    async with worker_holding(pipeline, gate):
        await client.start_illustration(retry)
        await wait_until(lambda: gate.waiting(2))
        with pytest.raises(BookBusy, match="book-illustration-"):
            await client.redraw_page(retry, 1)
        gate.release()
        await client.wait_for_illustration(retry)


async def test_an_operator_starts_a_redraw_from_the_temporal_cli_with_plain_json(
    pipeline: Pipeline,
) -> None:
    book_id, _ = await partial_book(pipeline)
    workflow_id = contract.page_redraw_workflow_id(book_id)
    request = {"book_id": book_id, "page_number": 2, "note": "sunny"}

    async with pipeline.worker():
        await temporal_cli(
            pipeline.settings,
            "workflow", "start", "--type", contract.PAGE_REDRAW_WORKFLOW,
            "--task-queue", pipeline.settings.temporal_task_queue, "--workflow-id", workflow_id,
            "--input", json.dumps(request),
        )  # fmt: skip
        handle = pipeline.client.get_workflow_handle(workflow_id, result_type=RedrawOutcome)
        outcome = await handle.result()
        bad = await pipeline.client.start_workflow(
            contract.PAGE_REDRAW_WORKFLOW,
            {"book_id": book_id, "page": 2},
            id=f"{workflow_id}-typo",
            task_queue=pipeline.settings.temporal_task_queue,
        )
        with pytest.raises(WorkflowFailureError) as failure:
            await bad.result()

    assert outcome.book.status is BookStatus.COMPLETED
    assert pipeline.load(book_id)[1][1].change_request == "sunny"
    assert "page: Extra inputs are not permitted" in str(failure.value.cause)


async def test_a_reset_redraw_reuses_the_picture_it_stored_and_pays_one_call(
    pipeline: Pipeline,
) -> None:
    """The new version is on the CDN but not recorded when the operator resets the redraw
    run: the reset run (same chain, same claim) finds it and does not call the model."""
    book_id = pipeline.book(2)
    await pipeline.illustrate(book_id)
    calls_before = model_calls(pipeline.database, book_id)
    stored = Gate(held={2})
    providers = build_providers(pipeline.settings)
    providers = dataclasses.replace(providers, store=StoredThenHeldStore(providers.store, stored))
    client = pipeline.illustration_client()

    async with pipeline.worker(providers):
        run = await client.redraw_page(book_id, 2)
        await wait_until(lambda: stored.waiting(2))
        await temporal_cli(
            pipeline.settings,
            "workflow", "reset", "--workflow-id", run.workflow_id,
            "--type", "FirstWorkflowTask", "--reason", "operator test",
        )  # fmt: skip
        stored.release()
        outcome = await asyncio.wait_for(client.wait_for_redraw(book_id), timeout=30)

    assert outcome.book.status is BookStatus.COMPLETED
    assert [page.page_number for page in outcome.redrawn] == [2]
    with pipeline.database.sessions() as session:
        for call in session.scalars(select(ModelCall).where(ModelCall.book_id == book_id)):
            print(
                "CALL", call.page_id, call.run_id, call.workflow_run_id, call.attempt, call.outcome
            )
    assert model_calls(pipeline.database, book_id) == calls_before + 1
    page = pipeline.load(book_id)[1][1]
    assert page.image_version == 1
    assert page.generated_asset_id == pipeline.picture_id(book_id, 2, 1)


async def test_a_cancelled_redraw_keeps_the_picture_and_settles_the_book(
    pipeline: Pipeline,
) -> None:
    book_id = pipeline.book(2)
    await pipeline.illustrate(book_id)
    old = pipeline.load(book_id)[1][1].generated_asset_id
    client = pipeline.illustration_client()
    gate = Gate(held={2})

    async with worker_holding(pipeline, gate):
        await client.redraw_page(book_id, 2)
        await wait_until(lambda: gate.waiting(2))
        assert await client.cancel(book_id)  # the run working on the book is the redraw
        with pytest.raises(WorkflowFailureError):
            await asyncio.wait_for(client.wait_for_redraw(book_id), timeout=30)

    book, pages, _ = pipeline.load(book_id)
    assert book.status is BookStatus.COMPLETED and book.claim_run_id is None
    assert (pages[1].moderation_status, pages[1].generated_asset_id) == (ModerationStatus.OK, old)
    assert pages[1].redraw_problem is not None
    assert pages[1].redraw_problem.startswith("cancelled: the illustration run was cancelled")
