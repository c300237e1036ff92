"""A run works on the book its workflow id names and its input as typed, and only workers
that serve the same database and storage work on it (and say which file a full disk
refused)."""

from __future__ import annotations

import asyncio
import errno
import os
from dataclasses import replace
from pathlib import Path

import pytest
from pydantic import SecretStr
from temporalio.client import WorkflowFailureError

from storywink import contract
from storywink.book import records as book_records
from storywink.cli.watch import ending_line
from storywink.contract import BookStatus, IllustrationRequest, ModerationStatus
from storywink.db.connection import Database
from storywink.db.engine import make_engine, make_session_factory, upgrade_to_head
from storywink.db.fleet import MARKER_NAME, ensure_database_fleet
from storywink.demo.sample_book import sample_photo_bytes
from storywink.illustration import records as books
from storywink.illustration.client import RunEnding
from storywink.providers import local_storage
from storywink.providers.base import GeneratedImage, TransientError
from storywink.providers.factory import build_providers
from storywink.temporal.connection import connect_temporal
from storywink.temporal.failures import innermost_message
from storywink.worker.assembly import build_workers
from tests.support.commands import run_worker
from tests.support.helpers import (
    create_book,
    load_book,
    wait_until,
)
from tests.support.page_fakes import CountingIllustrator
from tests.support.pipeline import Pipeline


async def test_a_run_under_one_book_s_workflow_id_with_another_book_s_input_is_refused(
    pipeline: Pipeline,
) -> None:
    urls = pipeline.photos("photos", 1)
    book_a, book_b = pipeline.book(urls), pipeline.book(urls)
    client = pipeline.illustration_client()
    handle = await pipeline.client.start_workflow(
        contract.BOOK_ILLUSTRATION_WORKFLOW,
        IllustrationRequest(book_id=book_b),
        id=contract.illustration_workflow_id(book_a),
        task_queue=pipeline.settings.temporal_task_queue,
    )
    # What `storywink illustrate A` follows while that run runs.
    following = asyncio.create_task(client.wait_for_illustration_end(book_a))
    async with pipeline.worker():
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
        end = await following

    expected = (
        f"workflow book-illustration-{book_a} names book {book_a} but its input names book {book_b}"
    )
    assert innermost_message(failed.value.cause) == expected
    assert end.ending is RunEnding.FAILED
    assert expected in ending_line(end)
    for book_id in (book_a, book_b):  # neither book was claimed or changed
        assert pipeline.load(book_id)[0].status is BookStatus.STORY_READY


def wrong_database(tmp_path: Path) -> tuple[Database, str]:
    """A second database, as a worker started on another DATABASE_URL has it."""
    url = f"sqlite:///{tmp_path / 'other.db'}"
    engine = make_engine(url)
    upgrade_to_head(engine)
    return Database(engine, make_session_factory(engine)), url


async def test_a_page_reaching_a_worker_of_another_database_waits_for_one_of_its_own(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    book_id = pipeline.book(2)
    other, other_url = wrong_database(tmp_path)
    elsewhere = pipeline.settings.model_copy(update={"database_url": SecretStr(other_url)})
    heard: list[str] = []
    drawn = CountingIllustrator()
    providers = replace(build_providers(elsewhere), illustrator=drawn)
    book_poller, own_pages, _ = build_workers(
        pipeline.client, pipeline.settings, pipeline.database, build_providers(pipeline.settings)
    )
    _, wrong_pages, _ = build_workers(  # another process's client, as another worker has
        await connect_temporal(elsewhere), elsewhere, other, providers, on_wrong_fleet=heard.append
    )
    async with book_poller:
        async with wrong_pages:  # the only page worker, at first
            handle = await pipeline.start(book_id)
            await wait_until(lambda: len(heard) >= 2)
        async with own_pages:
            outcome = await handle.result()
    other.engine.dispose()

    assert outcome.status is BookStatus.COMPLETED
    assert drawn.calls == 0  # nothing fetched, paid for or written by the wrong worker
    with pipeline.database.sessions() as session:
        ours = ensure_database_fleet(session)
    with other.sessions() as session:
        theirs = ensure_database_fleet(session)
    assert f"was prepared by fleet {ours}, but this worker serves fleet {theirs}" in heard[0]
    assert f"database {other_url} (DATABASE_URL)" in heard[0]


@pytest.mark.each_database  # finalize's one transaction on the book and its pages
def test_finalize_never_settles_a_book_with_a_page_the_run_has_no_outcome_for(
    database: Database, tmp_path: Path
) -> None:
    book_id = create_book(database, [None, None, None])
    with database.sessions() as session:
        book = book_records.claim(session, books.ILLUSTRATION_RUN, book_id, "wf", "run-1")
        pages = [page.id for page in book.pages]
        books.record_page(session, pages[0], "run-1", ModerationStatus.OK, image_ref="file:///a")
        outcome = books.settle_book(
            session, book_id, "run-1", settling_run_id="run-1", cancelled=False
        )
    _, settled, _ = load_book(database, book_id)

    assert [p.moderation_status for p in settled] == [
        ModerationStatus.OK, ModerationStatus.FAILED, ModerationStatus.FAILED
    ]  # fmt: skip
    assert settled[1].moderation_reason == books.UNACCOUNTED
    assert (outcome.status, outcome.pages_with_image, outcome.pages_failed) == (
        BookStatus.PARTIAL, 1, 2
    )  # fmt: skip


@pytest.mark.parametrize("database_is", ["another-fleet-s", "new"])
def test_a_worker_whose_database_and_storage_disagree_refuses_to_start(
    tmp_path: Path, database_is: str
) -> None:
    storage = tmp_path / "storage"
    storage.mkdir()
    (storage / MARKER_NAME).write_text('{"fleet_id": "f1"}')
    db_file = tmp_path / "db.sqlite"
    if database_is == "another-fleet-s":
        other, _ = wrong_database(tmp_path)
        with other.sessions() as session:
            fleet = ensure_database_fleet(session)
        other.engine.dispose()
        db_file = tmp_path / "other.db"
        holds = f"holds fleet {fleet}"
    else:
        holds = "holds no fleet yet (a new database)"

    result = run_worker(tmp_path, DATABASE_URL=f"sqlite:///{db_file}")

    assert result.returncode == 2, result.stderr
    [line] = [ln for ln in result.stderr.splitlines() if "worker not started" in ln]
    assert f"database sqlite:///{db_file} (DATABASE_URL) {holds}, but storage" in line
    assert "(STORAGE_DIR) belongs to fleet f1" in line


async def test_a_priority_given_as_a_string_fails_the_start_naming_it(pipeline: Pipeline) -> None:
    book_id = pipeline.book(1)
    async with pipeline.worker():
        handle = await pipeline.client.start_workflow(
            contract.BOOK_ILLUSTRATION_WORKFLOW,
            {"book_id": book_id, "priority": "1"},  # as `temporal workflow start --input`
            id=f"string-priority-{book_id}",
            task_queue=pipeline.settings.temporal_task_queue,
        )
        with pytest.raises(WorkflowFailureError) as failure:
            await asyncio.wait_for(handle.result(), timeout=15)

    assert "priority: Input should be a valid integer" in str(failure.value.cause)
    assert pipeline.load(book_id)[0].status is BookStatus.STORY_READY


def test_a_full_disk_names_the_file_and_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_space(_: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", no_space)
    store = local_storage.LocalImageStore(tmp_path / "storage")
    png = GeneratedImage(sample_photo_bytes(1), "image/jpeg")

    with pytest.raises(TransientError) as full:
        asyncio.run(store.store(png, "storywink/b/originals/page_1", tags=[], context={}))

    assert full.value.reason == (
        f"cannot write {tmp_path}/storage/storywink/b/originals/page_1.png (local storage, "
        f"STORAGE_DIR={tmp_path}/storage): No space left on device"
    )


async def test_a_run_reaching_a_book_worker_of_another_database_waits_for_one_of_its_own(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    book_id = pipeline.book(1)
    other, other_url = wrong_database(tmp_path)
    elsewhere = pipeline.settings.model_copy(update={"database_url": SecretStr(other_url)})
    heard: list[str] = []
    wrong_books, _, _ = build_workers(
        await connect_temporal(elsewhere),
        elsewhere,
        other,
        build_providers(elsewhere),
        on_wrong_fleet=heard.append,
    )
    with pipeline.database.sessions() as session:  # the fleet its workers made (alone, none yet)
        ensure_database_fleet(session)
    client = pipeline.illustration_client()
    async with wrong_books:  # the only book worker, at first: today `book … not found`
        run = await client.start_illustration(book_id)
        await wait_until(lambda: len(heard) >= 1)
    async with pipeline.worker():
        outcome = await client.wait_for_illustration(book_id)
    other.engine.dispose()

    assert outcome.status is BookStatus.COMPLETED
    assert f"run {run.workflow_id} was started for fleet " in heard[0]
    assert f"database {other_url} (DATABASE_URL)" in heard[0]
