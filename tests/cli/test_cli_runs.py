"""`storywink illustrate` and the client on the real dev server: how a run ends, whose run
it is, and what a silent wait means.

`storywink illustrate` runs as a real subprocess; the worker runs in this process with an
illustrator that holds every page until the test releases it, so runs stay RUNNING for as
long as the test needs.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from storywink import contract
from storywink.book.refusals import RunEnded
from storywink.cli import ExitCode
from storywink.config import Settings
from storywink.contract import BookStatus, IllustrationRequest
from storywink.db.connection import Database
from storywink.illustration.client import IllustrationClient, RunEnding
from storywink.providers.factory import build_providers
from storywink.temporal.connection import connect_temporal
from tests.support.commands import STORYWINK, cli_env
from tests.support.gated_providers import Gate, GatedIllustrator
from tests.support.helpers import (
    create_book,
    load_book,
    photo_urls,
    running_worker,
    temporal_cli,
    wait_until,
)
from tests.support.pipeline import Pipeline
from tests.support.temporal_server import dev_server

pytestmark = pytest.mark.process


@dataclass
class Cli:
    """A running `storywink illustrate BOOK_ID`."""

    process: asyncio.subprocess.Process
    stderr: list[str]

    async def line_containing(self, text: str, within: float = 30.0) -> str:
        async def read() -> str:
            assert self.process.stderr is not None
            while True:
                raw = await self.process.stderr.readline()
                if not raw:
                    raise AssertionError(f"{text!r} never printed: {self.stderr}")
                self.stderr.append(raw.decode().rstrip("\n"))
                if text in self.stderr[-1]:
                    return self.stderr[-1]

        return await asyncio.wait_for(read(), within)

    async def finish(self, within: float = 60.0) -> tuple[int, list[str]]:
        assert self.process.stderr is not None
        rest = await asyncio.wait_for(self.process.stderr.read(), within)
        self.stderr.extend(rest.decode().splitlines())
        return await self.process.wait(), self.stderr


@asynccontextmanager
async def storywink_illustrate(
    settings: Settings, tmp_path: Path, book_id: str
) -> AsyncIterator[Cli]:
    env = cli_env(tmp_path)
    env.update(
        DATABASE_URL=settings.resolved_database_url,
        TEMPORAL_ADDRESS=settings.temporal_address,
        TEMPORAL_TASK_QUEUE=settings.temporal_task_queue,
        TEMPORAL_ILLUSTRATION_TASK_QUEUE=settings.temporal_illustration_task_queue,
    )
    process = await asyncio.create_subprocess_exec(
        str(STORYWINK),
        "illustrate",
        book_id,
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        yield Cli(process, [])
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def assert_ends_with_one_line(lines: list[str], expected: str) -> None:
    assert not any("Traceback" in line for line in lines), lines
    assert lines[-1].startswith(expected), lines


@asynccontextmanager
async def held_worker(pipeline: Pipeline) -> AsyncIterator[GatedIllustrator]:
    providers = build_providers(pipeline.settings)
    held = GatedIllustrator(providers.illustrator, Gate(pass_first=0))  # holds every page
    async with pipeline.worker(replace(providers, illustrator=held)):
        yield held


def claimed(database: Database, book_id: str) -> bool:
    return load_book(database, book_id)[0].status is BookStatus.ILLUSTRATING


async def test_a_cancelled_run_is_one_line_with_the_settled_book_and_exit_6(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    book_id = pipeline.book(3)
    async with (
        held_worker(pipeline),
        storywink_illustrate(pipeline.settings, tmp_path, book_id) as cli,
    ):
        await cli.line_containing("illustrating book")
        await wait_until(lambda: claimed(pipeline.database, book_id))
        await pipeline.client.get_workflow_handle(
            contract.illustration_workflow_id(book_id)
        ).cancel()
        code, lines = await cli.finish()

    assert code == ExitCode.CANCELLED, lines
    assert_ends_with_one_line(
        lines, f"book {book_id}: cancelled (book is PARTIAL: 0/3 pages illustrated"
    )
    assert pipeline.load(book_id)[0].status is BookStatus.PARTIAL


async def test_a_terminated_run_is_one_line_naming_the_stuck_book_and_exit_7(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    book_id = pipeline.book(2)
    async with (
        held_worker(pipeline),
        storywink_illustrate(pipeline.settings, tmp_path, book_id) as cli,
    ):
        await cli.line_containing("illustrating book")
        await wait_until(lambda: claimed(pipeline.database, book_id))
        handle = pipeline.client.get_workflow_handle(contract.illustration_workflow_id(book_id))
        await handle.terminate(reason="operator gave up")
        code, lines = await cli.finish()

    assert code == ExitCode.TERMINATED, lines
    assert_ends_with_one_line(
        lines, f"book {book_id}: terminated: operator gave up (book is still ILLUSTRATING"
    )
    assert f"storywink illustrate {book_id}" in lines[-1]


async def test_after_a_reset_the_cli_follows_the_new_run_to_its_outcome(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    book_id = pipeline.book(2)
    workflow_id = contract.illustration_workflow_id(book_id)
    async with (
        held_worker(pipeline) as held,
        storywink_illustrate(pipeline.settings, tmp_path, book_id) as cli,
    ):
        await cli.line_containing("illustrating book")
        await wait_until(lambda: claimed(pipeline.database, book_id))
        first_run = (await pipeline.client.get_workflow_handle(workflow_id).describe()).run_id
        # The new run prepares again, under the claim of its chain (kept by the reset).
        await temporal_cli(
            pipeline.settings, "workflow", "reset", "--workflow-id", workflow_id,
            "--type", "FirstWorkflowTask", "--reason", "redeploy",
        )  # fmt: skip
        described = await pipeline.client.get_workflow_handle(workflow_id).describe()
        assert described.run_id != first_run
        assert pipeline.load(book_id)[0].claim_run_id == first_run
        held.gate.release()
        code, lines = await cli.finish()

    assert code == ExitCode.OK, lines
    assert_ends_with_one_line(lines, f"book {book_id}: COMPLETED (2/2 pages illustrated)")


async def test_with_no_worker_illustrate_says_so_then_ends_when_the_run_does(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    book_id = pipeline.book(1)
    async with storywink_illustrate(pipeline.settings, tmp_path, book_id) as cli:
        warning = await cli.line_containing("no worker is polling")
        await pipeline.client.get_workflow_handle(
            contract.illustration_workflow_id(book_id)
        ).terminate(reason="no worker")
        code, lines = await cli.finish()

    assert warning == (
        f"no worker is polling workflow task queue {pipeline.settings.temporal_task_queue} "
        "(0 pollers); start one with: python worker.py"
    )
    assert code == ExitCode.TERMINATED, lines
    assert_ends_with_one_line(lines, f"book {book_id}: terminated: no worker (book is STORY_READY")


async def test_a_run_under_another_workflow_id_is_followed_by_illustrate_and_the_client(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    book_id = pipeline.book(3)
    client = IllustrationClient(
        pipeline.client,
        pipeline.database.sessions,
        pipeline.settings.temporal_task_queue,
        pipeline.settings.temporal_illustration_task_queue,
    )
    ops_id = f"ops-rerun-{uuid.uuid4().hex[:8]}"
    async with held_worker(pipeline) as held:
        await pipeline.client.start_workflow(
            contract.BOOK_ILLUSTRATION_WORKFLOW,
            IllustrationRequest(book_id=book_id),
            id=ops_id,
            task_queue=pipeline.settings.temporal_task_queue,
        )
        await wait_until(lambda: claimed(pipeline.database, book_id))
        # The claim is written inside prepare; the run's progress moves once prepare returns.
        async with asyncio.timeout(30):
            progress = await client.illustration_progress(book_id)
            while progress.phase == "preparing":
                progress = await client.illustration_progress(book_id)
        async with storywink_illustrate(pipeline.settings, tmp_path, book_id) as cli:
            started = await cli.line_containing("illustrating book")
            held.gate.release()
            code, lines = await cli.finish()
        waited = await client.wait_for_illustration_end(book_id)

    assert (progress.phase, progress.to_draw, progress.total) == ("illustrating", 3, 3)
    assert started == f"illustrating book {book_id} (workflow {ops_id})"
    assert code == ExitCode.OK, lines
    assert_ends_with_one_line(lines, f"book {book_id}: COMPLETED (3/3 pages illustrated)")
    # Settled: the outcome at once, from the database.
    assert (waited.ending, waited.book.status) == (
        RunEnding.ALREADY_SETTLED,
        BookStatus.COMPLETED,
    )


async def test_the_client_cancels_and_waits_for_a_run_under_another_workflow_id(
    pipeline: Pipeline,
) -> None:
    book_id = pipeline.book(2)
    client = pipeline.illustration_client()
    ops_id = f"ops-rerun-{uuid.uuid4().hex[:8]}"
    async with held_worker(pipeline):
        await pipeline.client.start_workflow(
            contract.BOOK_ILLUSTRATION_WORKFLOW,
            IllustrationRequest(book_id=book_id),
            id=ops_id,
            task_queue=pipeline.settings.temporal_task_queue,
        )
        await wait_until(lambda: claimed(pipeline.database, book_id))
        waiting = asyncio.ensure_future(client.wait_for_illustration(book_id))
        assert await client.cancel(book_id)
        with pytest.raises(RunEnded) as ended:
            await waiting
        end = await client.wait_for_illustration_end(book_id)

    assert (ended.value.ending, ended.value.status) == ("cancelled", BookStatus.PARTIAL)
    assert end.ending is RunEnding.ALREADY_SETTLED
    assert not await client.cancel(book_id)  # nothing runs any more


async def test_illustrate_keeps_following_the_run_through_a_temporal_restart(
    settings: Settings, database: Database, tmp_path: Path
) -> None:
    """A brief restart of the server (file-backed: the run survives it) is a lost
    connection, said so, not `error: Temporal refused` and exit 2 ("bad configuration")."""
    book_id = create_book(database, photo_urls(tmp_path / "storage" / "photos", 2))
    (tmp_path / "temporal").mkdir()
    async with dev_server(tmp_path / "temporal") as server:
        own = settings.model_copy(update={"temporal_address": server.address})
        async with storywink_illustrate(own, tmp_path, book_id) as cli:
            await cli.line_containing("illustrating book")  # the run waits for a worker
            server.kill()
            lost = await cli.line_containing("lost the connection to Temporal")
            await server.start()
            async with running_worker(await connect_temporal(own), own, database):
                code, lines = await cli.finish()

    assert "still following the run for up to 60 s" in lost
    assert any("connection to Temporal is back" in line for line in lines), lines
    assert code == ExitCode.OK, lines
    assert_ends_with_one_line(lines, f"book {book_id}: COMPLETED (2/2 pages illustrated)")
