"""A real `python worker.py` process draws a whole book, and a model call that hangs past
its timeout fails only its own page.

The same book with several processes is tests/worker/test_replicas.py
(`test_three_replicas_draw_every_page_exactly_once`); in-process runs of a nine-page book
are tests/workflows/test_pipeline.py
(`test_nine_page_book_is_completed_with_one_notification`) and
tests/providers/test_pipeline_providers.py
(`test_nine_pages_drawn_by_gemini_and_stored_on_cloudinary`, and
`test_safety_block_is_flagged_once_and_a_hanging_call_is_retried` for a call that hangs
once and then answers); the production timeouts on the time-skipping server are in
tests/workflows/test_workflow_time_skipping.py. Temporal and the database going away
mid-run are tests/worker/test_crashes.py: no page fails there, the runs go on once the
service is back.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest

from storywink.contract import BookStatus, ModerationStatus, NotificationType
from tests.support.fakes.gemini_server import Fault
from tests.support.pipeline import Pipeline
from tests.support.provider_fakes import Fakes
from tests.support.worker_processes import page_identities, wait_until_ready, worker_processes


@pytest.mark.process
async def test_one_worker_process_draws_a_nine_page_book(
    fake_pipeline: Pipeline, fakes: Fakes, tmp_path: Path
) -> None:
    """One worker process, a 9-page book: all 9 pages complete, each drawn and stored once."""
    fakes.gemini.set_latency(0.5)
    book_id = fake_pipeline.book(9, photos="one-process")
    with worker_processes(fake_pipeline.settings, fakes, 1, tmp_path) as replicas:
        await wait_until_ready(replicas)
        handle = await fake_pipeline.start(book_id)
        outcome = await asyncio.wait_for(handle.result(), timeout=60)
        identities = await page_identities(handle)
        replicas[0].signal(signal.SIGTERM)
        code = await replicas[0].exit_code(within=15)

    assert code == 0
    assert outcome.status is BookStatus.COMPLETED
    assert (outcome.pages_total, outcome.pages_with_image) == (9, 9)
    assert identities == {"replica-0": 9}
    _, pages, notes = fake_pipeline.load(book_id)
    assert [note.type for note in notes] == [NotificationType.BOOK_COMPLETED]
    for page in pages:
        assert page.moderation_status is ModerationStatus.OK
        assert fakes.cloudinary.uploads_of(fake_pipeline.picture_id(book_id, page.page_number)) == 1
    assert fakes.gemini.call_count == 9


async def test_a_model_call_past_its_timeout_fails_only_its_page(
    fake_pipeline: Pipeline, fakes: Fakes
) -> None:
    """Scaled down (a 1 s model timeout, the model answering in 60 s): the call is abandoned
    at the timeout, retried, and the page ends FAILED with a timeout reason after its
    attempts; the other pages and the book are unaffected."""
    timeout, attempts = 1.0, 2
    pipeline = fake_pipeline.with_settings(
        model_timeout_seconds=timeout, page_retry_attempts=attempts
    )
    fakes.gemini.fail_when("Page 2 of the story", Fault.hang(60))
    book_id = pipeline.book(3, photos="model-timeout")
    async with pipeline.worker():
        started = time.monotonic()
        outcome = await (await pipeline.start(book_id)).result()
        elapsed = time.monotonic() - started

    _, pages, notes = pipeline.load(book_id)
    by_number = {page.page_number: page for page in pages}
    assert by_number[2].moderation_status is ModerationStatus.FAILED
    assert by_number[2].moderation_reason == "generate: timeout"
    assert fakes.gemini.calls_with("Page 2 of the story") == attempts
    assert by_number[1].moderation_status is by_number[3].moderation_status is ModerationStatus.OK
    assert outcome.status is BookStatus.PARTIAL
    assert [note.type for note in notes] == [NotificationType.BOOK_PARTIAL]
    # Given up after its attempts' timeouts, not after the model's 60 s.
    assert elapsed < attempts * timeout + 10, f"settled after {elapsed:.1f}s"
