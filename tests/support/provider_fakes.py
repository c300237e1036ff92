"""Fake Gemini and Cloudinary servers wired into settings, for pipeline tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from storywink.config import Settings
from storywink.demo.sample_book import sample_photo_bytes
from tests.support.fakes.cloudinary_server import FakeCloudinaryServer
from tests.support.fakes.gemini_server import AnswerFormat, FakeGeminiServer

GEMINI_KEY = "AIzaFAKE-test-key-0123456789-secret"
CLOUD = ("storywink-test", "123456789012345", "cdn-secret-abcdefghijklmnop")


@dataclass
class Fakes:
    gemini: FakeGeminiServer
    cloudinary: FakeCloudinaryServer

    @property
    def cloudinary_url(self) -> str:
        return self.cloudinary.cloudinary_url()

    def env(self, settings: Settings) -> dict[str, str]:
        """The environment a `python worker.py` process needs to use these fakes."""
        return {
            "GEMINI_API_KEY": GEMINI_KEY,
            "GEMINI_BASE_URL": self.gemini.base_url,
            "CLOUDINARY_URL": self.cloudinary_url,
            "ILLUSTRATOR": "gemini",
            "STORAGE": "cloudinary",
            "STYLE_ASSETS_URL": settings.style_assets_url,
            "ALLOW_PRIVATE_FETCH": "true",
        }

    def photo_urls(self, book: str, count: int) -> list[str]:
        urls = []
        for n in range(1, count + 1):
            photo = sample_photo_bytes(n)
            urls.append(self.gemini.add_image(f"/photos/{book}/{n}.jpg", photo, "image/jpeg"))
        return urls


SettingsFactory = Callable[..., Settings]
STYLE_REFERENCES = (
    "/styles/vignette/reference-1.png",
    "/styles/vignette/title.png",
    "/styles/crayon/reference-1.png",
    "/styles/storybook/reference-1.png",
    "/styles/storybook/reference-2.png",
)


@contextmanager
def running_fakes(answer_format: AnswerFormat = "2026") -> Iterator[Fakes]:
    """Both fake services, the Gemini one also serving the styles' reference images."""
    cloud, key, secret = CLOUD
    with (
        FakeGeminiServer(api_key=GEMINI_KEY, answer_format=answer_format) as gemini,
        FakeCloudinaryServer(cloud_name=cloud, api_key=key, api_secret=secret) as cloudinary,
    ):
        for n, path in enumerate(STYLE_REFERENCES):
            gemini.add_image(path, sample_photo_bytes(n + 20, "PNG"))
        yield Fakes(gemini, cloudinary)


def provider_values(fakes: Fakes) -> dict[str, object]:
    """Settings that use the fakes through the real SDKs."""
    return {
        "illustrator": "gemini",
        "storage": "cloudinary",
        "gemini_api_key": GEMINI_KEY,
        "gemini_base_url": fakes.gemini.base_url,
        "cloudinary_url": fakes.cloudinary_url,
        "style_assets_url": fakes.gemini.url("/styles/"),
    }
