"""Story generation end to end: the real workflow and worker, the real google-genai SDK
against the fake text endpoint (JSON mode, `responseSchema`), both databases."""

from __future__ import annotations

import json

import pytest

from storywink.contract import BookStatus, ModerationStatus
from tests.support.helpers import keep_history
from tests.support.pipeline import Pipeline
from tests.support.provider_fakes import Fakes


@pytest.mark.each_database  # every page text in one transaction
async def test_a_draft_gets_its_story_then_its_pictures(
    fake_pipeline: Pipeline, fakes: Fakes
) -> None:
    book_id = fake_pipeline.draft(5, photos="story5")
    async with fake_pipeline.worker():
        handle = await fake_pipeline.start_story(book_id)
        outcome = await handle.result()
    await keep_history(handle, "story_ready")

    assert outcome.status is BookStatus.STORY_READY
    assert outcome.pages_written == 5
    book, pages, _ = fake_pipeline.load(book_id)
    assert book.status is BookStatus.STORY_READY
    assert book.claim_run_id is None
    assert pages[0].text == book.title
    assert [p.text for p in pages[1:]] == [
        f"Page {n}: the child plays outside. What fun!" for n in range(2, 6)
    ]
    assert all(p.illustration_notes and p.text_problem is None for p in pages)
    (request,) = fakes.gemini.requests
    assert request.wants_json and request.model == fake_pipeline.settings.gemini_text_model
    assert len(request.inline_images) == 5  # the photos, in page order
    assert "Mia" in request.prompt and book.title in request.prompt
    schema = json.dumps(request.generation_config.get("responseSchema"))
    assert "illustration_notes" in schema

    outcome_after = await fake_pipeline.illustrate(book_id)
    assert outcome_after.status is BookStatus.COMPLETED
    _, pages, _ = fake_pipeline.load(book_id)
    assert all(p.moderation_status is ModerationStatus.OK for p in pages)
    # The notes reached the image prompt.
    image_prompts = [r.prompt for r in fakes.gemini.requests if not r.wants_json]
    assert any("bright and happy, scene 3" in prompt for prompt in image_prompts)
