"""A run works on the book its workflow id names, and only workers that serve the same
database and storage work on it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowFailureError

from storywink import contract
from storywink.cli.watch import ending_line
from storywink.client import IllustrationClient, RunEnding, failure_message
from storywink.config import Settings
from storywink.connections import Database
from storywink.contract import BookStatus, IllustrationRequest
from tests.support.helpers import create_book, load_book, photo_urls, running_worker


async def test_a_run_under_one_book_s_workflow_id_with_another_book_s_input_is_refused(
    temporal_client: Client, settings: Settings, database: Database, tmp_path: Path
) -> None:
    urls = photo_urls(tmp_path / "storage" / "photos", 1)
    book_a, book_b = create_book(database, urls), create_book(database, urls)
    client = IllustrationClient(temporal_client, database.sessions, settings.temporal_task_queue)
    handle = await temporal_client.start_workflow(
        contract.BOOK_ILLUSTRATION_WORKFLOW,
        IllustrationRequest(book_id=book_b),
        id=contract.workflow_id_for(book_a),
        task_queue=settings.temporal_task_queue,
    )
    # What `storywink illustrate A` follows while that run runs.
    following = asyncio.create_task(client.wait_for_end(book_a))
    async with running_worker(temporal_client, settings, database):
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
        end = await following

    expected = (
        f"workflow book-illustration-{book_a} names book {book_a} but its input names book {book_b}"
    )
    assert failure_message(failed.value.cause) == expected
    assert end.ending is RunEnding.FAILED
    assert expected in ending_line(end)
    for book_id in (book_a, book_b):  # neither book was claimed or changed
        assert load_book(database, book_id)[0].status is BookStatus.STORY_READY
