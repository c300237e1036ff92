"""`storywink books`: in progress, recent outcomes, and stuck books, on the real dev server.

Each test gets a database of its own, so the listing (and the exit code) sees only the
books the test made.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity, workflow
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker
from typer.testing import CliRunner, Result

from storywink import contract
from storywink.book import records as book_records
from storywink.book.report import (
    BookInProgress,
    BooksReport,
    RunState,
    build_report,
    format_age,
    recent_outcomes,
)
from storywink.cli import ExitCode, app
from storywink.config import Settings
from storywink.contract import BookOutcome, BookStatus, ModerationStatus
from storywink.db.connection import Database
from storywink.db.engine import is_sqlite, make_engine, make_session_factory, upgrade_to_head
from storywink.illustration import records as books
from storywink.providers.factory import build_providers
from tests.support.gated_providers import Gate, GatedIllustrator
from tests.support.helpers import (
    create_book,
    load_book,
    photo_urls,
    temporal_cli,
    wait_until,
)
from tests.support.pipeline import Pipeline, offline_pipeline
from tests.support.services import postgres_database

pytestmark = pytest.mark.each_database


@pytest.fixture
def own_database_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    """A new, empty database on the same backend as `database_url`."""
    if is_sqlite(database_url):
        yield f"sqlite:///{tmp_path / 'report.db'}"
    else:
        yield from postgres_database(f"storywink_report_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def own_database(own_database_url: str) -> Iterator[Database]:
    engine = make_engine(own_database_url)
    upgrade_to_head(engine)
    yield Database(engine, make_session_factory(engine))
    engine.dispose()


@pytest.fixture
def pipeline(
    temporal_env: WorkflowEnvironment, own_database_url: str, own_database: Database, tmp_path: Path
) -> Pipeline:
    """The pipeline on a database of its own: the report lists every book in it."""
    return offline_pipeline(temporal_env, own_database_url, own_database, tmp_path)


def _invoke(settings: Settings, args: list[str], columns: int = 400) -> Result:
    env = {
        "DATABASE_URL": settings.resolved_database_url,
        "TEMPORAL_ADDRESS": settings.temporal_address,
        "TEMPORAL_NAMESPACE": settings.temporal_namespace,
        "TEMPORAL_TASK_QUEUE": settings.temporal_task_queue,
        "COLUMNS": str(columns),
    }
    return CliRunner().invoke(app, ["books", *args], env=env)


async def storywink_books(settings: Settings, *args: str, columns: int = 400) -> Result:
    # In a thread: the command runs its own event loop.
    return await asyncio.to_thread(_invoke, settings, list(args), columns)


async def report_for(pipeline: Pipeline) -> BooksReport:
    return await build_report(
        pipeline.client, pipeline.database.sessions, pipeline.settings.temporal_task_queue
    )


def in_progress(report: BooksReport, book_id: str) -> BookInProgress:
    return next(book for book in report.in_progress if book.book_id == book_id)


def _claim(database: Database, book_id: str, run_id: str) -> None:
    with database.sessions() as session:
        book_records.claim(
            session,
            books.ILLUSTRATION_RUN,
            book_id,
            contract.illustration_workflow_id(book_id),
            run_id,
        )


async def test_settled_books_are_recent_outcomes_newest_first_with_page_counts(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    complete = pipeline.book(3, photos="a", title="All drawn")
    missing_photo = (tmp_path / "no-such-photo.jpg").as_uri()
    partial = pipeline.book(
        [*pipeline.photos("b", 2), missing_photo],
        title="One missing",
    )
    async with pipeline.worker():
        for book_id in (complete, partial):
            await (await pipeline.start(book_id)).result()

    report = await report_for(pipeline)
    result = await storywink_books(pipeline.settings)

    assert report.in_progress == () and report.stuck == ()
    assert [(o.book_id, o.status) for o in report.recent] == [
        (partial, BookStatus.PARTIAL),
        (complete, BookStatus.COMPLETED),
    ]
    counts = [o.pages.model_dump() for o in report.recent]
    assert counts == [
        {"total": 3, "ok": 2, "flagged": 0, "failed": 1, "pending": 0, "settled": 3},
        {"total": 3, "ok": 3, "flagged": 0, "failed": 0, "pending": 0, "settled": 3},
    ]
    assert result.exit_code == 0, result.output
    assert "No book is in progress." in result.stdout
    lines = result.stdout.splitlines()
    row = next(line for line in lines if partial in line)
    cells = [cell.strip() for cell in row.split("│")[1:-1]]
    assert cells[1:7] == ["One missing", "PARTIAL", "2", "0", "1", "3"]
    assert lines.index(row) < lines.index(next(line for line in lines if complete in line))


async def test_flagged_and_failed_pages_are_counted_and_recent_is_limited(
    own_database: Database, tmp_path: Path
) -> None:
    older = create_book(own_database, photo_urls(tmp_path / "storage" / "a", 1), title="Older")
    book_id = create_book(own_database, photo_urls(tmp_path / "storage" / "b", 4))
    run_id = str(uuid.uuid4())
    _claim(own_database, older, run_id)
    with own_database.sessions() as session:
        books.settle_book(session, older, run_id, settling_run_id=run_id, cancelled=True)
    _claim(own_database, book_id, run_id)
    _, pages, _ = load_book(own_database, book_id)
    with own_database.sessions() as session:
        books.record_page(session, pages[0].id, run_id, ModerationStatus.OK, image_ref="x:1")
        books.record_page(session, pages[1].id, run_id, ModerationStatus.FLAGGED, reason="r")
        books.record_page(session, pages[2].id, run_id, ModerationStatus.FAILED, reason="r")
        books.settle_book(session, book_id, run_id, settling_run_id=run_id, cancelled=True)

        newest = recent_outcomes(session, limit=1)
        both = recent_outcomes(session)

    assert [(o.book_id, o.status) for o in newest] == [(book_id, BookStatus.PARTIAL)]
    # Page 4 was never drawn: finalize of the cancelled run failed it.
    assert (newest[0].pages.ok, newest[0].pages.flagged, newest[0].pages.failed) == (1, 1, 2)
    assert [o.book_id for o in both] == [book_id, older]


async def test_a_running_book_is_in_progress_until_its_run_is_terminated_then_stuck(
    pipeline: Pipeline,
) -> None:
    book_id = pipeline.book(3)
    providers = build_providers(pipeline.settings)
    held = GatedIllustrator(providers.illustrator, Gate(pass_first=0))  # holds every page
    async with pipeline.worker(replace(providers, illustrator=held)):
        handle = await pipeline.start(book_id)
        await wait_until(lambda: pipeline.load(book_id)[0].status is BookStatus.ILLUSTRATING)
        running = await report_for(pipeline)
        running_cli = await storywink_books(pipeline.settings, "--json")
        await handle.terminate("operator test")
        stuck = await report_for(pipeline)
        stuck_cli = await storywink_books(pipeline.settings)

        # The hint works: the run it starts takes the stale claim over and settles the book.
        assert stuck.in_progress[0].run is not None
        hint = stuck.in_progress[0].run.hint or ""
        command = shlex.split(hint[hint.index("temporal workflow start") :])
        await temporal_cli(pipeline.settings, *command[1:])
        await wait_until(
            lambda: pipeline.load(book_id)[0].claim_run_id not in (None, handle.result_run_id)
        )
        held.gate.release()
        outcome = await pipeline.client.get_workflow_handle(
            contract.illustration_workflow_id(book_id), result_type=BookOutcome
        ).result()
    after = await report_for(pipeline)

    book = in_progress(running, book_id)
    assert (book.status, book.run_id, book.stuck) == (
        BookStatus.ILLUSTRATING,
        handle.result_run_id,
        False,
    )
    assert book.run is not None and book.run.state is RunState.RUNNING
    assert book.run.started_at is not None
    assert (book.pages.settled, book.pages.total) == (0, 3)
    assert running_cli.exit_code == 0, running_cli.output
    document: dict[str, Any] = json.loads(running_cli.stdout)
    assert document["stuck"] == []
    [listed] = document["in_progress"]
    assert (listed["book_id"], listed["run_id"], listed["stuck"]) == (
        book_id,
        handle.result_run_id,
        False,
    )
    assert listed["run"]["state"] == "running"

    book = in_progress(stuck, book_id)
    assert stuck.stuck == (book_id,)
    assert book.run is not None
    assert (book.run.state, book.run.temporal_status) == (RunState.ENDED, "TERMINATED")
    assert stuck_cli.exit_code == ExitCode.STUCK, stuck_cli.output
    assert "STUCK: run terminated" in stuck_cli.stdout
    assert "1 stuck" in stuck_cli.stdout
    assert command[:3] == ["temporal", "workflow", "start"]

    assert outcome.status is BookStatus.COMPLETED
    assert after.in_progress == () and after.stuck == ()
    assert [(o.book_id, o.pages.ok) for o in after.recent] == [(book_id, 3)]


async def test_claims_without_a_running_workflow_are_stuck_and_the_command_exits_3(
    pipeline: Pipeline,
) -> None:
    never_started = pipeline.book(2, photos="a", title="Ghost run")
    _claim(pipeline.database, never_started, str(uuid.uuid4()))
    # A claim written by the system we replaced: its run id cannot name a Temporal run.
    foreign = pipeline.book(1, photos="e", title="Old system")
    _claim(pipeline.database, foreign, "bullmq-job-42")
    no_run = pipeline.book(1, photos="b", status=BookStatus.ILLUSTRATING)
    generating = pipeline.book(1, photos="c", status=BookStatus.GENERATING)
    waiting = pipeline.book(1, photos="d")

    as_json = await storywink_books(pipeline.settings, "--json")
    human = await storywink_books(pipeline.settings)

    assert as_json.exit_code == ExitCode.STUCK, as_json.output
    document: dict[str, Any] = json.loads(as_json.stdout)
    assert sorted(document["stuck"]) == sorted([never_started, foreign, no_run, generating])
    assert document["in_progress"] and {
        book["run"]["state"] for book in document["in_progress"] if book["book_id"] == foreign
    } == {"not_found"}
    by_id = {book["book_id"]: book for book in document["in_progress"]}
    assert waiting not in by_id
    assert by_id[never_started]["run"]["state"] == "not_found"
    assert by_id[never_started]["workflow_id"] == contract.illustration_workflow_id(never_started)
    assert "temporal workflow start" in by_id[never_started]["run"]["hint"]
    assert by_id[no_run]["run"]["state"] == "no_run"
    assert f"storywink illustrate {no_run}" in by_id[no_run]["run"]["hint"]
    assert by_id[generating]["status"] == "GENERATING"
    assert "DRAFT" in by_id[generating]["run"]["hint"]
    assert human.exit_code == ExitCode.STUCK
    assert "4 stuck" in human.stdout
    assert "STUCK: run not found in Temporal" in human.stdout


def test_ages_read_in_their_two_largest_units() -> None:
    now = datetime(2025, 1, 2, 12, 0, tzinfo=UTC)
    ages = [
        format_age(now - delta, now)
        for delta in (
            timedelta(seconds=45),
            timedelta(minutes=3, seconds=7),
            timedelta(hours=2, minutes=5),
            timedelta(days=3, hours=4, minutes=30),
            timedelta(seconds=-5),
        )
    ]
    assert ages == ["45s", "3m 07s", "2h 05m", "3d 4h", "0s"]
    assert format_age(datetime(2025, 1, 2, 11, 59), now) == "1m 00s"  # naive: UTC


@dataclass(frozen=True)
class ClaimInput:
    book_id: str
    workflow_id: str
    run_id: str


@workflow.defn(name="ClaimsThenFails")
class ClaimsThenFails:
    """A run that claims a book and then fails before it can settle it."""

    @workflow.run
    async def run(self, book_id: str) -> None:
        info = workflow.info()
        await workflow.execute_activity(
            "claim_book_for_test",
            ClaimInput(book_id=book_id, workflow_id=info.workflow_id, run_id=info.run_id),
            start_to_close_timeout=timedelta(seconds=10),
        )
        raise ApplicationError(
            "finalize gave up: database unreachable for 24 h", non_retryable=True
        )


async def test_a_book_whose_run_failed_is_stuck_with_the_reason_and_ids_are_never_cut(
    pipeline: Pipeline,
) -> None:
    book_id = pipeline.book(2, title="Lost " * 30)
    settled = pipeline.book(1, photos="other", title="Done " * 30)

    @activity.defn(name="claim_book_for_test")
    def claim(request: ClaimInput) -> None:
        with pipeline.database.sessions() as session:
            book_records.claim(
                session,
                books.ILLUSTRATION_RUN,
                request.book_id,
                request.workflow_id,
                request.run_id,
            )

    queue = f"{pipeline.settings.temporal_task_queue}-fails"
    async with (
        pipeline.worker(),
        Worker(
            pipeline.client,
            task_queue=queue,
            workflows=[ClaimsThenFails],
            activities=[claim],
            activity_executor=ThreadPoolExecutor(1),
            # The sandbox would re-import this test module; the workflow is trivial.
            workflow_runner=UnsandboxedWorkflowRunner(),
        ),
    ):
        await (await pipeline.start(settled)).result()
        failing = await pipeline.client.start_workflow(
            ClaimsThenFails.run, book_id, id=f"ops-{uuid.uuid4().hex[:8]}", task_queue=queue
        )
        with pytest.raises(WorkflowFailureError):
            await failing.result()

    result = await storywink_books(pipeline.settings, columns=80)

    assert result.exit_code == ExitCode.STUCK, result.output
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, result.stdout
    # Whole ids in both tables, the titles shortened instead.
    assert any(line.startswith(f"│ {book_id} │") for line in lines), result.stdout
    assert any(line.startswith(f"│ {settled} │") for line in lines), result.stdout
    text = " ".join(result.stdout.split())
    assert "run failed: finalize gave up: database unreachable for 24 h" in text
    assert f"held by workflow {failing.id}, run {failing.result_run_id}" in text
    assert f"`storywink illustrate {book_id}`" in text
