"""Gemini text models (through `google-genai`) as a `StoryWriter`.

Asks for JSON that follows `StoryAnswer` (`response_schema`), with the pages' photos in
page order. Errors are classified as on the image side (`gemini.py`): the SDK never
retries, Temporal does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import pydantic
from google import genai
from google.genai import types

from storywink.providers.base import ContentRefused, ProviderError, TransientError
from storywink.providers.gemini import (
    COPYRIGHT_REASONS,
    SAFETY_REASONS,
    client_secrets,
    enum_name,
    generate,
    read_usage,
)
from storywink.providers.story import StoryAnswer, StoryJob, UnusableAnswer
from storywink.redact import redact, shorten

_NORMAL_ENDINGS: Final = frozenset({"", "STOP", "FINISH_REASON_UNSPECIFIED"})
_CUT_OFF: Final = "MAX_TOKENS"
_PROBLEM_LIMIT: Final = 300


class GeminiStoryWriter:
    name = "gemini"
    uses_photos = True

    def __init__(self, client: genai.Client, model: str) -> None:
        self._client = client
        self._model = model
        self._secrets = client_secrets(client)

    async def write(self, job: StoryJob) -> StoryAnswer:
        config = types.GenerateContentConfig(
            response_mime_type="application/json", response_schema=StoryAnswer
        )
        response = await generate(
            self._client, self._secrets, self._model, build_story_contents(job), config
        )
        return read_story(response, self._secrets)


def story_prompt(job: StoryJob) -> str:
    title_pages = [page.page_number for page in job.pages if page.is_title_page]
    title_line = (
        f"Page {title_pages[0]} is the title page: its text is the title, exactly as given. "
        if title_pages
        else ""
    )
    return (
        "You are writing a children's picture book from a family's photos. "
        f"The child's name is {_one_line(job.child_name)}. "
        f'The book\'s title is "{_one_line(job.title)}". '
        f"The book has {job.page_count} pages; the photos follow, one per page, in page "
        "order (the first photo is page 1). "
        f"{title_line}"
        "For every other page write 1 to 3 short, simple sentences a young child enjoys "
        "hearing, telling one story across the pages from what each photo shows, with the "
        "child as the hero. "
        f"The tone is {job.tone}; the pictures will be drawn in the "
        f"{_one_line(job.style_label)} style. "
        "For every page also give short illustration notes (one sentence: the mood, the "
        "action, what to emphasise). "
        "Answer with JSON only: the title, and one entry per page with its page_number, "
        "text and illustration_notes."
    )


def build_story_contents(job: StoryJob) -> list[types.Content]:
    parts = [types.Part.from_text(text=story_prompt(job))]
    for page in job.pages:
        if page.photo is not None:
            parts.append(types.Part.from_text(text=f"Photo of page {page.page_number}:"))
            parts.append(
                types.Part.from_bytes(data=page.photo.data, mime_type=page.photo.mime_type)
            )
    return [types.Content(role="user", parts=parts)]


def read_story(response: types.GenerateContentResponse, secrets: Sequence[str] = ()) -> StoryAnswer:
    """`_read_story`, its errors carrying the answer's usage (the call was billed)."""
    try:
        return _read_story(response, secrets)
    except ProviderError as error:
        error.usage = read_usage(response)
        raise


def _read_story(response: types.GenerateContentResponse, secrets: Sequence[str]) -> StoryAnswer:
    """The answer as a `StoryAnswer`, or the error that says why there is none."""
    feedback = response.prompt_feedback
    if feedback is not None and feedback.block_reason is not None:
        raise ContentRefused(f"blocked: {enum_name(feedback.block_reason)}")
    candidate = response.candidates[0] if response.candidates else None
    reason = enum_name(candidate.finish_reason) if candidate is not None else ""
    if reason in SAFETY_REASONS:
        raise ContentRefused(f"safety: {reason}")
    if reason in COPYRIGHT_REASONS:
        raise ContentRefused(f"copyright: {reason}")
    parts = candidate.content.parts if candidate and candidate.content else None
    text = "".join(part.text for part in parts or [] if part.text and not part.thought)
    if not text.strip():
        raise _no_text(reason)
    try:
        return StoryAnswer.model_validate_json(text).with_usage(read_usage(response))
    except pydantic.ValidationError as error:
        cut = " (cut off: MAX_TOKENS)" if reason == _CUT_OFF else ""
        raise UnusableAnswer(
            shorten(redact(f"answer breaks the schema{cut}: {_problems(error)}", secrets), 400)
        ) from None


def _no_text(reason: str) -> ProviderError:
    if reason == _CUT_OFF:
        return UnusableAnswer("answer cut off before any text (MAX_TOKENS)")
    if reason in _NORMAL_ENDINGS:
        return TransientError("empty response from the model")  # a glitch: ask again
    return ContentRefused(f"no story: {reason}")


def _problems(error: pydantic.ValidationError) -> str:
    found = [f"{'.'.join(map(str, e['loc'])) or 'answer'}: {e['msg']}" for e in error.errors()[:5]]
    return shorten("; ".join(found), _PROBLEM_LIMIT)


def _one_line(value: str) -> str:
    return " ".join(value.split())
