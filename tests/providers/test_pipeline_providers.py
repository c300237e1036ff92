"""The pipeline through the real google-genai and cloudinary SDKs, against local fakes."""

from __future__ import annotations

import logging

import pytest

from storywink.contract import BookStatus, ModerationStatus, NotificationType
from tests.support.fakes.gemini_server import Fault
from tests.support.pipeline import Pipeline
from tests.support.provider_fakes import CLOUD, GEMINI_KEY, Fakes


async def test_nine_pages_drawn_by_gemini_and_stored_on_cloudinary(
    fake_pipeline: Pipeline, fakes: Fakes
) -> None:
    book_id = fake_pipeline.book(9, photos="b9")
    async with fake_pipeline.worker():
        handle = await fake_pipeline.start(book_id)
        outcome = await handle.result()
        outcome_run_id = handle.result_run_id

    assert outcome.status is BookStatus.COMPLETED
    _, pages, notes = fake_pipeline.load(book_id)
    assert [n.type for n in notes] == [NotificationType.BOOK_COMPLETED]
    assert fakes.gemini.call_count == 9
    for page in pages:
        public_id = fake_pipeline.picture_id(book_id, page.page_number)
        assert fakes.cloudinary.uploads_of(public_id) == 1
        assert page.moderation_status is ModerationStatus.OK
        asset = fakes.cloudinary.asset(public_id)
        assert asset is not None and asset.context["run_id"] == outcome_run_id
        assert asset.delivery_type == "authenticated"  # private: served only by signed URLs
        assert (page.generated_asset_id, page.generated_image_url) == (public_id, None)
        assert page.model_calls == 1
    # Each call carried the photo and the style reference inline, and asked for a 1:1 image.
    request = fakes.gemini.requests[0]
    assert len(request.inline_images) == 2
    assert request.generation_config["imageConfig"]["aspectRatio"] == "1:1"


async def test_safety_block_is_flagged_once_and_a_hanging_call_is_retried(
    fake_pipeline: Pipeline, fakes: Fakes
) -> None:
    pipeline = fake_pipeline.with_settings(model_timeout_seconds=1.5)
    fakes.gemini.fail_when("Page 3 of the story", Fault.blocked("SAFETY"))
    fakes.gemini.fail_when("Page 4 of the story", Fault.hang(30), times=1)
    book_id = pipeline.book(5, photos="b5")
    outcome = await pipeline.illustrate(book_id)

    _, pages, notes = pipeline.load(book_id)
    by_number = {page.page_number: page for page in pages}
    assert by_number[3].moderation_status is ModerationStatus.FLAGGED
    assert "SAFETY" in (by_number[3].moderation_reason or "")
    assert by_number[3].moderation_reason.startswith("generate:")  # type: ignore[union-attr]
    assert fakes.gemini.calls_with("Page 3 of the story") == 1  # not retried
    assert by_number[4].moderation_status is ModerationStatus.OK
    assert fakes.gemini.calls_with("Page 4 of the story") == 2  # timed out, then retried
    assert outcome.status is BookStatus.PARTIAL
    assert (outcome.pages_with_image, outcome.pages_flagged) == (4, 1)
    assert [n.type for n in notes] == [NotificationType.BOOK_PARTIAL]


async def test_smart_retry_redraws_only_what_is_missing(
    fake_pipeline: Pipeline, fakes: Fakes
) -> None:
    pipeline = fake_pipeline.with_settings(page_retry_attempts=2)
    fakes.gemini.fail_when("Page 2 of the story", Fault.blocked("SAFETY"))
    fakes.gemini.fail_when("Page 3 of the story", Fault.http(503), times=2)
    book_id = pipeline.book(4, photos="bs")
    async with pipeline.worker():
        first = await (await pipeline.start(book_id)).result()
        calls_after_first = fakes.gemini.call_count
        second = await (await pipeline.start(book_id)).result()

    assert first.status is BookStatus.PARTIAL and first.pages_failed == 1
    # Only page 3 (failed) is drawn again: not the OK pages, not the flagged page 2.
    assert fakes.gemini.call_count - calls_after_first == 1
    assert second.status is BookStatus.PARTIAL
    assert (second.pages_with_image, second.pages_flagged, second.pages_failed) == (3, 1, 0)
    _, _, notes = pipeline.load(book_id)
    assert len(notes) == 2  # one per run


async def test_no_secret_reaches_history_failures_or_logs(
    fake_pipeline: Pipeline, fakes: Fakes, caplog: pytest.LogCaptureFixture
) -> None:
    pipeline = fake_pipeline.with_settings(page_retry_attempts=2)
    # Providers that echo credentials back must not carry them into our records.
    fakes.gemini.fail_when("Page 2 of the story", Fault.http(403, f"key {GEMINI_KEY} invalid"))
    fakes.gemini.fail_when("Page 3 of the story", Fault.http(503, f"busy {GEMINI_KEY}"))
    book_id = pipeline.book(3, photos="bsec")
    caplog.set_level(logging.DEBUG)
    async with pipeline.worker():
        handle = await pipeline.start(book_id)
        outcome = await handle.result()
        history = (await handle.fetch_history()).to_json()

    assert outcome.pages_failed == 2
    _, pages, _ = pipeline.load(book_id)
    reasons = " ".join(page.moderation_reason or "" for page in pages)
    assert "generate: HTTP 403" in reasons and "generate:" in reasons
    assert "busy [redacted]" in history  # the provider's message got there, cleaned
    secrets = [GEMINI_KEY, CLOUD[2]]
    for where, text in [("history", history), ("reasons", reasons), ("logs", caplog.text)]:
        for secret in secrets:
            assert secret not in text, f"a secret leaked into the {where}"
