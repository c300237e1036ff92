"""The four validation tests of the post-mortem (race-condition-analysis.txt, section 9),
as tests. Where another file already holds one, it is named here rather than repeated:

1. Single worker instance, 9 pages, all complete: `test_1_single_worker_instance` below
   (one `python worker.py` process; the in-process variants are
   tests/test_pipeline.py::test_nine_page_book_is_completed_with_one_notification and
   tests/test_pipeline_providers.py::test_nine_pages_drawn_by_gemini_and_stored_on_cloudinary).
2. Multiple worker instances, 9 pages, all complete, spread over the instances:
   tests/test_replicas.py::test_three_replicas_draw_every_page_exactly_once.
3. The model delayed past its timeout: `test_3_model_delayed_past_its_timeout` below. The
   seed expected the job to fail with a timeout error; here each call is cut at
   MODEL_TIMEOUT_SECONDS, retried, and when retries run out the page is FAILED with a
   timeout reason while the book still settles. (A call that hangs once and then answers
   is in tests/test_pipeline_providers.py,
   `test_safety_block_is_flagged_once_and_a_hanging_call_is_retried`; the production
   timeouts on the time-skipping server are in tests/test_workflow_time_skipping.py.)
4. The backing store killed during processing (Redis in the old system; its role, the
   queue, is Temporal's here): tests/test_crashes.py::
   test_temporal_server_crash_and_restart_mid_run_every_book_settles. The seed expected
   jobs marked failed; here no job fails: the runs resume when the server is back. The
   database going away is
   tests/test_crashes.py::test_postgresql_unreachable_mid_run_activities_retry_and_nothing_is_duplicated.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest
from temporalio.client import Client

from storywink.connections import Database
from storywink.contract import BookStatus, ModerationStatus, NotificationType, page_public_id
from tests.support.fakes.gemini_server import Fault
from tests.support.helpers import create_book, load_book, running_worker, start
from tests.support.provider_fakes import Fakes, SettingsFactory
from tests.support.worker_processes import page_identities, wait_until_ready, worker_processes


@pytest.mark.process
async def test_1_single_worker_instance(
    temporal_client: Client,
    database: Database,
    fakes: Fakes,
    provider_settings: SettingsFactory,
    tmp_path: Path,
) -> None:
    """Seed validation test 1: one worker process, a 9-page book: all 9 pages complete."""
    settings = provider_settings()
    fakes.gemini.set_latency(0.5)
    book_id = create_book(database, fakes.photo_urls("seed1", 9))
    with worker_processes(settings, fakes, 1, tmp_path) as replicas:
        await wait_until_ready(replicas)
        handle = await start(temporal_client, settings, book_id)
        outcome = await asyncio.wait_for(handle.result(), timeout=60)
        identities = await page_identities(handle)
        replicas[0].signal(signal.SIGTERM)
        code = await replicas[0].exit_code(within=15)

    assert code == 0
    assert outcome.status is BookStatus.COMPLETED
    assert (outcome.pages_total, outcome.pages_with_image) == (9, 9)
    assert identities == {"replica-0": 9}
    _, pages, notes = load_book(database, book_id)
    assert [note.type for note in notes] == [NotificationType.BOOK_COMPLETED]
    for page in pages:
        assert page.moderation_status is ModerationStatus.OK
        assert fakes.cloudinary.uploads_of(page_public_id(book_id, page.page_number)) == 1
    assert fakes.gemini.call_count == 9


async def test_3_model_delayed_past_its_timeout(
    temporal_client: Client,
    database: Database,
    fakes: Fakes,
    provider_settings: SettingsFactory,
) -> None:
    """Seed validation test 3, scaled down (a 1 s model timeout, the model answering in
    60 s): the call is abandoned at the timeout, retried, and the page ends FAILED with a
    timeout reason after its attempts; the other pages and the book are unaffected."""
    timeout, attempts = 1.0, 2
    settings = provider_settings(model_timeout_seconds=timeout, page_retry_attempts=attempts)
    fakes.gemini.fail_when("Page 2 of the story", Fault.hang(60))
    book_id = create_book(database, fakes.photo_urls("seed3", 3))
    async with running_worker(temporal_client, settings, database):
        started = time.monotonic()
        outcome = await (await start(temporal_client, settings, book_id)).result()
        elapsed = time.monotonic() - started

    _, pages, notes = load_book(database, book_id)
    by_number = {page.page_number: page for page in pages}
    assert by_number[2].moderation_status is ModerationStatus.FAILED
    assert by_number[2].moderation_reason == "generate: timeout"
    assert fakes.gemini.calls_with("Page 2 of the story") == attempts
    assert by_number[1].moderation_status is by_number[3].moderation_status is ModerationStatus.OK
    assert outcome.status is BookStatus.PARTIAL
    assert [note.type for note in notes] == [NotificationType.BOOK_PARTIAL]
    # Given up after its attempts' timeouts, not after the model's 60 s.
    assert elapsed < attempts * timeout + 10, f"settled after {elapsed:.1f}s"
