"""Build the story writer the settings ask for, once per process."""

from __future__ import annotations

from storywink.config import Settings, StoryWriterKind
from storywink.providers.story import StoryWriter


def build_story_writer(settings: Settings) -> StoryWriter:
    if settings.story_writer_kind is StoryWriterKind.OFFLINE:
        from storywink.providers.offline_story import OfflineStoryWriter

        return OfflineStoryWriter()
    from storywink.providers.gemini import build_gemini_client
    from storywink.providers.gemini_story import GeminiStoryWriter

    assert settings.gemini_api_key is not None  # checked by Settings
    client = build_gemini_client(
        settings.gemini_api_key.get_secret_value(),
        settings.gemini_base_url,
        settings.model_timeout_seconds,
    )
    return GeminiStoryWriter(client, model=settings.gemini_text_model)
