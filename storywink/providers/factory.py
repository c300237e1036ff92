"""Build the providers the settings ask for, once per process."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from storywink.config import IllustratorKind, Settings, StorageKind, StoryWriterKind
from storywink.providers.base import Illustrator, ImageStore
from storywink.providers.fetch import ImageFetcher
from storywink.providers.story import StoryWriter

if TYPE_CHECKING:
    from google import genai


@dataclass(frozen=True)
class Providers:
    illustrator: Illustrator
    store: ImageStore
    fetcher: ImageFetcher

    async def aclose(self) -> None:
        await self.fetcher.aclose()


def build_illustrator(settings: Settings) -> Illustrator:
    if settings.illustrator_kind is IllustratorKind.LOCAL:
        from storywink.providers.local_illustrator import LocalIllustrator

        return LocalIllustrator(settings.local_image_size)
    from storywink.providers.gemini import GeminiIllustrator

    illustrator = GeminiIllustrator(
        _gemini_client(settings),
        model=settings.gemini_image_model,
        image_size=settings.gemini_image_size,
    )
    illustrator.warm_up()
    return illustrator


def build_store(settings: Settings) -> ImageStore:
    if settings.storage_kind is StorageKind.LOCAL:
        from storywink.providers.local_storage import LocalImageStore

        return LocalImageStore(settings.storage_dir)
    from storywink.providers.cloudinary_store import CloudinaryStore

    return CloudinaryStore(settings.cloudinary, timeout_seconds=settings.fetch_timeout_seconds)


def build_providers(settings: Settings) -> Providers:
    return Providers(
        illustrator=build_illustrator(settings),
        store=build_store(settings),
        fetcher=ImageFetcher(
            timeout_seconds=settings.fetch_timeout_seconds,
            max_bytes=settings.max_fetch_bytes,
            allow_private=settings.allow_private_fetch,
            # Local storage keeps the parents' photos on disk as file:// URLs; nothing
            # outside it may be read (and, with a real model, sent away).
            file_root=settings.storage_dir if settings.storage_kind is StorageKind.LOCAL else None,
        ),
    )


def build_story_writer(settings: Settings) -> StoryWriter:
    if settings.story_writer_kind is StoryWriterKind.OFFLINE:
        from storywink.providers.offline_story import OfflineStoryWriter

        return OfflineStoryWriter()
    from storywink.providers.gemini_story import GeminiStoryWriter

    return GeminiStoryWriter(_gemini_client(settings), model=settings.gemini_text_model)


def gemini_client(settings: Settings) -> genai.Client:
    """A Gemini client on the settings' key, base URL and timeout."""
    return _gemini_client(settings)


def _gemini_client(settings: Settings) -> genai.Client:
    from storywink.providers.gemini import build_gemini_client

    assert settings.gemini_api_key is not None  # checked by Settings
    return build_gemini_client(
        settings.gemini_api_key.get_secret_value(),
        settings.gemini_base_url,
        settings.model_timeout_seconds,
    )
