"""The pipeline end to end on the real dev server, a real database and the offline providers."""

from __future__ import annotations

import asyncio
import json

import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import ActivityError, ApplicationError

from storywink import contract
from storywink.book.refusals import BookNotFound, BookNotReady
from storywink.config import Settings
from storywink.contract import BookStatus, ModerationStatus, NotificationType, Progress
from storywink.images import image_mime_type
from storywink.providers.factory import build_providers
from storywink.worker.assembly import build_workers
from tests.support.helpers import (
    keep_history,
    temporal_cli,
    wait_until,
)
from tests.support.pipeline import Pipeline


@pytest.mark.each_database  # the whole run on each database
async def test_nine_page_book_is_completed_with_one_notification(pipeline: Pipeline) -> None:
    book_id = pipeline.book(9)
    async with pipeline.worker():
        handle = await pipeline.start(book_id)
        outcome = await handle.result()
        progress = await handle.query(contract.PROGRESS_QUERY, result_type=Progress)
    await keep_history(handle, "completed")

    assert outcome.status is BookStatus.COMPLETED
    assert (outcome.pages_total, outcome.pages_with_image) == (9, 9)
    assert (progress.done, progress.total, progress.status) == (9, 9, BookStatus.COMPLETED)
    book, pages, notes = pipeline.load(book_id)
    assert book.status is BookStatus.COMPLETED
    assert [n.type for n in notes] == [NotificationType.BOOK_COMPLETED]
    assert all(p.moderation_status is ModerationStatus.OK for p in pages)
    stored = sorted(
        (pipeline.settings.storage_dir / "storywink" / book_id / "generated").glob("*.png")
    )
    ids = [pipeline.picture_id(book_id, n) for n in range(1, 10)]
    # One folder per book; names that say nothing of the page (an HMAC with the book's salt).
    assert sorted(p.name for p in stored) == sorted(f"{i.rsplit('/', 1)[1]}.png" for i in ids)
    assert not any("page" in p.name for p in stored)
    assert all(image_mime_type(p.read_bytes()) == "image/png" for p in stored)
    assert [p.generated_asset_id for p in pages] == ids
    assert [p.generated_image_url for p in pages] == [None] * 9


async def test_starting_twice_gives_one_run(pipeline: Pipeline) -> None:
    book_id = pipeline.book(3)
    client = pipeline.illustration_client()
    async with pipeline.worker():
        runs = await asyncio.gather(*(client.start_illustration(book_id) for _ in range(5)))
        again = await client.start_illustration(book_id)
        outcome = await client.wait_for_illustration(book_id)

    assert len({run.run_id for run in [*runs, again]}) == 1
    assert outcome.status is BookStatus.COMPLETED
    _, _, notes = pipeline.load(book_id)
    assert len(notes) == 1


@pytest.mark.each_database  # the takeover is one transaction on the book's row
async def test_a_claim_left_by_a_terminated_run_is_taken_over_by_the_next_start(
    pipeline: Pipeline,
) -> None:
    book_id = pipeline.book(2)
    client = pipeline.illustration_client()
    # Only the book poller runs: the run claims the book, then waits for pages nobody draws.
    queue = f"{pipeline.settings.temporal_illustration_task_queue}-unpolled"
    unpolled = pipeline.settings.model_copy(
        update={
            "temporal_illustration_task_queue": queue,
            "temporal_story_task_queue": f"{queue}-story",
        }
    )
    book_worker, *_ = build_workers(
        pipeline.client, unpolled, pipeline.database, build_providers(unpolled)
    )
    async with book_worker:
        first = await client.start_illustration(book_id)
        await wait_until(lambda: pipeline.load(book_id)[0].claim_run_id is not None)
        await client.handle(book_id).terminate("operator gave up on it")
    assert pipeline.load(book_id)[0].status is BookStatus.ILLUSTRATING  # left behind

    async with pipeline.worker():
        second = await client.start_illustration(book_id)
        outcome = await client.wait_for_illustration(book_id)

    assert second.run_id != first.run_id
    assert outcome.status is BookStatus.COMPLETED


async def test_book_in_wrong_status_is_refused(pipeline: Pipeline) -> None:
    book_id = pipeline.book(2, photos="p", status=BookStatus.DRAFT)
    client = pipeline.illustration_client()
    with pytest.raises(BookNotReady, match="DRAFT"):
        await client.start_illustration(book_id)
    with pytest.raises(BookNotFound):
        await client.start_illustration("no-such-book")

    async with pipeline.worker():
        handle = await pipeline.start(book_id)
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
    activity_error = failure.value.cause
    assert isinstance(activity_error, ActivityError)
    assert isinstance(activity_error.cause, ApplicationError)
    assert activity_error.cause.type == contract.BOOK_NOT_READY
    book, _, notes = pipeline.load(book_id)
    assert (book.status, notes) == (BookStatus.DRAFT, [])


async def _cli_start(settings: Settings, workflow_id: str, payload: str) -> None:
    await temporal_cli(
        settings, "workflow", "start", "--type", contract.BOOK_ILLUSTRATION_WORKFLOW,
        "--task-queue", settings.temporal_task_queue, "--workflow-id", workflow_id,
        "--input", payload,
    )  # fmt: skip


async def test_temporal_cli_plain_json_input_illustrates_the_book(pipeline: Pipeline) -> None:
    book_id = pipeline.book(2)
    async with pipeline.worker():
        await _cli_start(
            pipeline.settings,
            contract.illustration_workflow_id(book_id),
            json.dumps({"book_id": book_id}),
        )
        result = await pipeline.client.get_workflow_handle(
            contract.illustration_workflow_id(book_id)
        ).result()
    assert result["status"] == "COMPLETED"


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ('{"book_id": 5}', "book_id"),
        ("{}", "book_id"),
        ('{"book": "x"}', "book_id"),
        ('{"book_id": "unknown-book"}', "not found"),
    ],
)
async def test_bad_cli_input_fails_the_run_quickly(
    pipeline: Pipeline, payload: str, expected: str
) -> None:
    workflow_id = f"bad-input-{pipeline.settings.temporal_task_queue}"
    async with pipeline.worker():
        await _cli_start(pipeline.settings, workflow_id, payload)
        handle = pipeline.client.get_workflow_handle(workflow_id)
        with pytest.raises(WorkflowFailureError) as failure:
            await asyncio.wait_for(handle.result(), timeout=15)
    assert (await handle.describe()).status is WorkflowExecutionStatus.FAILED
    assert expected in str(failure.value.cause) + str(failure.value.cause.__cause__)
