"""GeminiStoryWriter against the fake Gemini server through the real google-genai SDK, in
both answer formats: today's thinking text models send a thought part before the JSON,
and report usage per modality."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from storywink.config import Settings
from storywink.providers.base import SourceImage
from storywink.providers.gemini import build_gemini_client
from storywink.providers.gemini_models import DEFAULT_TEXT_MODEL
from storywink.providers.gemini_story import GeminiStoryWriter
from storywink.providers.story import StoryJob, StoryJobPage
from tests.support.fakes.gemini_server import (
    ANSWER_FORMATS,
    STORY_TEXT_TOKENS,
    THOUGHT_TOKENS,
    AnswerFormat,
    FakeGeminiServer,
)

KEY = "AIzaFAKE-story-writer-key-0123456789"


def _photo() -> SourceImage:
    out = io.BytesIO()
    Image.new("RGB", (32, 32), (10, 120, 200)).save(out, format="PNG")
    return SourceImage(out.getvalue(), "image/png")


def _job(pages: int = 3) -> StoryJob:
    return StoryJob(
        title="Mia at the Sea",
        child_name="Mia",
        style_label="Vignette",
        tone="warm",
        pages=tuple(StoryJobPage(n, n == 1, _photo()) for n in range(1, pages + 1)),
    )


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.mark.parametrize("answer_format", ANSWER_FORMATS)
async def test_the_story_is_read_and_thought_parts_are_not_part_of_it(
    answer_format: AnswerFormat,
) -> None:
    with FakeGeminiServer(api_key=KEY, answer_format=answer_format) as gemini:
        client = build_gemini_client(KEY, gemini.base_url, 5.0)
        answer = await GeminiStoryWriter(client, DEFAULT_TEXT_MODEL).write(_job())
        await client.aio.aclose()

    assert [page.page_number for page in answer.pages] == [1, 2, 3]
    assert all("Planning" not in page.text for page in answer.pages)
    assert gemini.requests[0].model == DEFAULT_TEXT_MODEL
    assert answer.usage is not None
    if answer_format == "2026":
        assert answer.usage.output_by_modality == {"TEXT": STORY_TEXT_TOKENS}
        assert answer.usage.thought_tokens == THOUGHT_TOKENS
    else:
        assert answer.usage.output_tokens == 1290 and answer.usage.thought_tokens == 0


def test_the_usage_is_not_part_of_the_response_schema() -> None:
    from storywink.providers.story import StoryAnswer

    assert "usage" not in StoryAnswer.model_json_schema()["properties"]


def test_defaults_are_todays_models() -> None:
    settings = Settings(_env_file=None)
    assert settings.gemini_text_model == "gemini-3.5-flash-lite"
    assert settings.gemini_image_model == "gemini-3.1-flash-image"
