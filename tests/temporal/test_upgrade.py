"""An upgrade from the last release before the search attributes (c0ae7f7): a book its
worker started and was drawing when it was replaced finishes on this code, each page
drawn once. This code cannot replay that release's histories (storywink/temporal/upgrade.py says
why); the worker moves such runs to their first workflow task before it polls."""

from __future__ import annotations

import asyncio
import functools
import signal
import subprocess
import uuid
from pathlib import Path

import pytest
from pydantic import SecretStr
from temporalio.client import Client, WorkflowExecutionStatus

from storywink.contract import BookOutcome, BookStatus
from storywink.db.connection import open_database
from storywink.db.engine import make_engine, upgrade_to_head
from tests.support.commands import STORYWINK, cli_env
from tests.support.helpers import load_book, wait_until
from tests.support.provider_fakes import Fakes, SettingsFactory
from tests.support.releases import (
    ReleaseUnavailable,
    activities_completed,
    checkout,
    release_env,
    start_run,
    wait_for,
)
from tests.support.services import missing
from tests.support.worker_processes import page_identities, wait_until_ready, worker_processes

pytestmark = pytest.mark.process

LAST_RELEASE = "c0ae7f7"
TEXTS = ["Up early.", "Breakfast.", "The park.", "Home again."]


async def test_a_book_the_last_release_was_drawing_finishes_on_this_code_each_page_drawn_once(
    temporal_client: Client, fakes: Fakes, provider_settings: SettingsFactory, tmp_path: Path
) -> None:
    try:
        release = checkout(LAST_RELEASE)
    except ReleaseUnavailable as exc:
        missing(f"the release {LAST_RELEASE} is not in this clone's history: {exc}")
    database_file = tmp_path / "upgraded.db"
    address = temporal_client.service_client.config.target_host
    queue = f"upgrade-{uuid.uuid4().hex[:8]}"
    env = release_env(address, fakes, database_file, queue) | {"ILLUSTRATION_CONCURRENCY": "1"}
    fakes.gemini.set_latency(1.0)

    # The last release's database, book, worker and run.
    release.storywink(env, "db", "upgrade")
    book_id = release.create_book(env, tmp_path, TEXTS)
    old_worker = release.worker(env, tmp_path / "old-worker.log")
    try:
        workflow_id = await start_run(address, queue, book_id)
        old_run = (await temporal_client.get_workflow_handle(workflow_id).describe()).run_id
        # Held mid-run: prepare and two pages done, one page drawing, one waiting. Replaced
        # as a deploy replaces it: SIGTERM lets the drawing page finish.
        old = temporal_client.get_workflow_handle(workflow_id, run_id=old_run)
        await wait_for(functools.partial(activities_completed, old, 3), 60, "two drawn pages")
        old_worker.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(old_worker.wait, 30) == 0
    finally:
        if old_worker.poll() is None:
            old_worker.kill()

    drawn_by_the_release = fakes.gemini.call_count
    assert 2 <= drawn_by_the_release < len(TEXTS)  # the book really was mid-run
    upgrade_to_head(make_engine(f"sqlite:///{database_file}"))
    # The operator's look before the worker moves it: listed, nothing moved. (The server's
    # list of runs may lag behind a loaded machine: asked again for a while.)
    line = f"{workflow_id} run {old_run}: [TMPRL1100] Nondeterminism"
    for _ in range(10):
        listed = await asyncio.to_thread(
            subprocess.run,
            [str(STORYWINK), "runs", "upgrade", "--dry-run"],
            env=cli_env(tmp_path) | {"TEMPORAL_ADDRESS": address, "TEMPORAL_TASK_QUEUE": queue},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert listed.returncode == 0, listed.stderr
        if line in listed.stdout:
            break
        await asyncio.sleep(1)
    assert line in listed.stdout
    every_run = await asyncio.to_thread(
        subprocess.run,
        [str(STORYWINK), "runs", "upgrade", "--dry-run", "--all"],
        env=cli_env(tmp_path) | {"TEMPORAL_ADDRESS": address, "TEMPORAL_TASK_QUEUE": queue},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert every_run.stdout == listed.stdout  # the same run: the queue holds no other
    assert (await old.describe()).status is WorkflowExecutionStatus.RUNNING

    settings = provider_settings().model_copy(
        update={
            "database_url": SecretStr(f"sqlite:///{database_file}"),
            "temporal_task_queue": queue,
            "temporal_illustration_task_queue": f"{queue}-illustration",
            "temporal_story_task_queue": f"{queue}-story",
        }
    )
    with worker_processes(settings, fakes, 1, tmp_path, {"UPGRADE_CHECK_SECONDS": "2"}) as replicas:
        await wait_until_ready(replicas)
        latest = temporal_client.get_workflow_handle(workflow_id, result_type=BookOutcome)
        outcome = await asyncio.wait_for(latest.result(), timeout=60)
        log = replicas[0].log.read_text()

    assert outcome.status is BookStatus.COMPLETED
    assert "earlier release this code cannot replay" in log
    # The old run was reset into a new run of the same chain (it keeps the book's claim).
    new = await latest.describe()
    assert (await old.describe()).status is WorkflowExecutionStatus.TERMINATED
    assert new.run_id != old_run
    assert new.raw_description.workflow_execution_info.first_run_id == old_run
    assert sum((await page_identities(latest)).values()) == len(TEXTS) - drawn_by_the_release
    # Every page drawn once, across both releases: one model call a page (the title page's
    # prompt carries the title, not its text).
    assert fakes.gemini.call_count == len(TEXTS)
    assert [fakes.gemini.calls_with(text) for text in TEXTS[1:]] == [1] * (len(TEXTS) - 1)
    database = open_database(settings)
    try:
        await wait_until(lambda: load_book(database, book_id)[0].status is BookStatus.COMPLETED)
        _, pages, notes = load_book(database, book_id)
    finally:
        database.engine.dispose()
    assert all(page.picture_ref for page in pages)
    # The release's pictures keep their public URLs; this code's are private asset ids.
    assert sum(page.generated_asset_id is not None for page in pages) == (
        len(TEXTS) - drawn_by_the_release
    )
    assert sum(page.generated_image_url is not None for page in pages) == drawn_by_the_release
    assert len(notes) == 1
