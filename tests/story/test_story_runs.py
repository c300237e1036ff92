"""Story runs on the real dev server: one run per book however it is started, what the
books report and the client say while it runs, and a worker killed mid-call."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import httpx
import pytest
from temporalio.client import WorkflowFailureError

from storywink.book import report as book_report
from storywink.contract import STORY_WORKFLOW, BookStatus, story_workflow_id
from storywink.story.records import PageTextRefused, StoryNotAllowed
from storywink.temporal.failures import innermost_message
from tests.support.fakes.gemini_server import Fault
from tests.support.helpers import temporal_cli, wait_until
from tests.support.pipeline import Pipeline
from tests.support.provider_fakes import Fakes
from tests.support.worker_processes import free_port, wait_until_ready, worker_processes

pytestmark = pytest.mark.process


async def test_double_start_is_one_run_and_one_model_call(
    fake_pipeline: Pipeline, fakes: Fakes
) -> None:
    # The model thinks long enough for every check below to see the run at work, even on
    # a loaded machine.
    pipeline = fake_pipeline.with_settings(model_timeout_seconds=15)
    title = "Twice Started"
    fakes.gemini.fail_when(f'title is "{title}"', Fault.delay(10), times=1)
    book_id = pipeline.draft(3, photos="twice", title=title)
    client = pipeline.story_client()
    async with pipeline.worker():
        first = await client.start_story(book_id)
        second = await client.start_story(book_id)
        await wait_until(lambda: fakes.gemini.call_count == 1)  # the model is thinking
        third = await client.start_story(book_id)
        other_id = f"operator-story-{book_id}"
        await temporal_cli(
            pipeline.settings,
            *("workflow", "start", "--type", STORY_WORKFLOW),
            *("--task-queue", pipeline.settings.temporal_task_queue, "--workflow-id", other_id),
            *("--input", json.dumps({"book_id": book_id})),
        )
        with pytest.raises(WorkflowFailureError) as refused:
            await pipeline.client.get_workflow_handle(other_id).result()

        progress = await client.story_progress(book_id)
        report = await book_report.build_report(
            pipeline.client, pipeline.database.sessions, pipeline.settings.temporal_task_queue
        )
        with pytest.raises(PageTextRefused):
            await client.update_page_text(book_id, 2, "Too early.")
        outcome = await client.wait_for_story(book_id)

    assert first == second == third
    assert first.workflow_id == story_workflow_id(book_id)
    assert f"book {book_id} is held by workflow {first.workflow_id}" in str(
        innermost_message(refused.value.cause)
    )
    assert progress.phase == "writing" and progress.pages == 3
    (in_progress,) = [b for b in report.in_progress if b.book_id == book_id]
    assert in_progress.status is BookStatus.GENERATING and not in_progress.stuck
    assert outcome.status is BookStatus.STORY_READY
    assert fakes.gemini.calls_with(f'title is "{title}"') == 1

    # A parent's edit, now that no run works on the book; a second story is refused.
    await client.update_page_text(book_id, 2, "  Mia found a   shell. ")
    _, pages, _ = pipeline.load(book_id)
    assert pages[1].text == "Mia found a shell."
    for bad in ("", "One. Two. Three. Four.", "x" * 601):
        with pytest.raises(PageTextRefused):
            await client.update_page_text(book_id, 2, bad)
    with pytest.raises(StoryNotAllowed):
        await client.start_story(book_id)


async def test_a_worker_killed_during_the_story_call_the_story_completes_on_another(
    fake_pipeline: Pipeline, fakes: Fakes, tmp_path: Path
) -> None:
    heartbeat_timeout = 3.0
    title = "Killed Mid Story"
    fakes.gemini.fail_when(f'title is "{title}"', Fault.hang(60), times=1)
    book_id = fake_pipeline.draft(3, photos="killed", title=title)
    env = {
        "STORY_HEARTBEAT_TIMEOUT_SECONDS": str(heartbeat_timeout),
        "STORY_RETRY_INITIAL_SECONDS": "0.2",
    }
    client = fake_pipeline.story_client()
    with worker_processes(fake_pipeline.settings, fakes, 2, tmp_path, env) as replicas:
        await wait_until_ready(replicas)
        run = await client.start_story(book_id)
        await wait_until(lambda: fakes.gemini.call_count == 1)
        handle = fake_pipeline.client.get_workflow_handle(run.workflow_id)
        (pending,) = (await handle.describe()).raw_description.pending_activities
        victim = next(r for r in replicas if r.identity == pending.last_worker_identity)
        victim.signal(signal.SIGKILL)
        killed = time.monotonic()
        await victim.exit_code(within=5)
        outcome = await asyncio.wait_for(client.wait_for_story(book_id), 60)
        recovered_after = time.monotonic() - killed
        (survivor,) = [r for r in replicas if r is not victim]
        history = await handle.fetch_history()

    assert outcome.status is BookStatus.STORY_READY
    book, pages, _ = fake_pipeline.load(book_id)
    assert book.status is BookStatus.STORY_READY and all(p.text for p in pages)
    # The killed call was paid for; the retry on the survivor is the only other one.
    assert fakes.gemini.calls_with(f'title is "{title}"') == 2
    assert recovered_after < heartbeat_timeout + 10
    started = [
        event.activity_task_started_event_attributes
        for event in history.events
        if event.HasField("activity_task_started_event_attributes")
    ]
    assert started[-1].identity == survivor.identity


async def test_a_worker_exports_story_runs_model_calls_and_failures(
    fake_pipeline: Pipeline, fakes: Fakes, tmp_path: Path
) -> None:
    fakes.gemini.fail_when('title is "Refused Story"', Fault.blocked("SAFETY"))
    fakes.gemini.fail_when('title is "Slow Start"', Fault.http(503), times=1)
    ready = fake_pipeline.draft(2, photos="m1", title="Slow Start")
    refused = fake_pipeline.draft(2, photos="m2", title="Refused Story")
    metrics_port = free_port()
    env = {"METRICS_PORT": str(metrics_port), "STORY_RETRY_INITIAL_SECONDS": "0.2"}
    client = fake_pipeline.story_client()
    with worker_processes(fake_pipeline.settings, fakes, 1, tmp_path, env) as replicas:
        await wait_until_ready(replicas)
        for book_id in (ready, refused):
            await client.start_story(book_id)
        outcomes = [await client.wait_for_story(book_id) for book_id in (ready, refused)]
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"http://127.0.0.1:{metrics_port}/metrics")).text

    assert [o.status for o in outcomes] == [BookStatus.STORY_READY, BookStatus.FAILED]

    def value(name: str, label: str) -> float:
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(name + "{") and label in line
        )

    assert value("storywink_story_runs_total", 'status="STORY_READY"') == 1
    assert value("storywink_story_runs_total", 'status="FAILED"') == 1
    assert value("storywink_story_model_calls_total", 'outcome="ok"') == 1
    assert value("storywink_story_model_calls_total", 'outcome="transient_error"') == 1
    assert value("storywink_story_model_calls_total", 'outcome="refused"') == 1
    assert value("storywink_story_failures_total", 'reason="transient"') == 1
    assert value("storywink_story_failures_total", 'reason="refused"') == 1
    assert value("storywink_story_duration_seconds_count", 'status="STORY_READY"') == 1
