"""The small interfaces every provider implements, and the errors they raise.

Providers raise exactly three kinds of error, and the page activity maps them to the
page outcomes of docs/behaviour.md:
- `ContentRefused`  -> page FLAGGED, not retried;
- `PermanentError`  -> page FAILED at once, not retried;
- `FleetFault` (a `PermanentError` of the set-up: key, model, CDN credentials) -> the page
  is not settled: the worker pauses its page work until the fault clears (bounded);
- anything else (including `TransientError`) -> retried by Temporal with backoff.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


class ProviderError(Exception):
    """Base of the errors providers raise on purpose. `reason` is short and secret-free.
    `usage`: what the call used when the model answered (a refusal, an unusable answer)."""

    usage: TokenUsage | None = None

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ContentRefused(ProviderError):
    """The model refused or returned no image for a content reason (safety, recitation...)."""


class PermanentError(ProviderError):
    """Retrying cannot help: bad request, bad credentials, missing input."""


class FleetFault(PermanentError):
    """Not this page's fault but the whole fleet's set-up: a key the API refuses, a model it
    no longer knows, CDN credentials it refuses. No page can succeed until an operator fixes
    it, and then every page can. `setting` names what to fix. Where nothing handles it, it
    is a `PermanentError` (the story writer fails the story at once)."""

    def __init__(self, reason: str, setting: str) -> None:
        super().__init__(reason)
        self.setting = setting


class TransientError(ProviderError):
    """Worth retrying later: overload, timeout, outage.

    `retry_after` (seconds) is set when the provider said how long to wait (429 RetryInfo).
    """

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class RateLimited(TransientError):
    """The provider refused the call over its quota (HTTP 429)."""


@dataclass(frozen=True)
class SourceImage:
    data: bytes
    mime_type: str


@dataclass(frozen=True)
class IllustrationJob:
    """What an illustrator needs to draw one page."""

    prompt: str
    photo: SourceImage
    style_reference: SourceImage | None
    style_key: str
    text: str | None
    title: str
    is_title_page: bool


@dataclass(frozen=True)
class TokenUsage:
    """What one model call used, as the provider reported it (Gemini's `usageMetadata`)."""

    prompt_tokens: int = 0
    output_tokens: int = 0  # the answer's tokens, thinking excluded
    thought_tokens: int = 0
    output_by_modality: dict[str, int] = field(default_factory=dict)  # e.g. IMAGE, TEXT

    @property
    def billed_output_tokens(self) -> int:
        """Output as billed: the answer and the thinking."""
        return self.output_tokens + self.thought_tokens


@dataclass(frozen=True)
class GeneratedImage:
    data: bytes
    mime_type: str
    usage: TokenUsage | None = field(default=None, compare=False)


@dataclass(frozen=True)
class StoredImage:
    """An asset in a store. `url` is where a public asset is served; for a private one
    (`private`) it is no address to hand out: show it through `ImageStore.signed_url`."""

    url: str
    public_id: str
    context: dict[str, str] = field(default_factory=dict)
    private: bool = True


class Illustrator(Protocol):
    """Draws one page. Implementations: Gemini (google-genai) and the offline one."""

    name: str
    # Whether `illustrate` needs the style's reference image fetched and passed in.
    uses_style_reference: bool

    async def illustrate(self, job: IllustrationJob) -> GeneratedImage: ...


class ImageStore(Protocol):
    """Keeps pictures under deterministic ids. Implementations: Cloudinary and local disk.

    Photos and pictures are private (`private=True`): served only through `signed_url`.
    Only the styles' reference images, our own art, are stored public."""

    name: str

    async def store(
        self,
        image: GeneratedImage,
        public_id: str,
        tags: list[str],
        context: dict[str, str],
        *,
        private: bool = True,
    ) -> StoredImage: ...

    async def find(self, public_id: str, *, private: bool = True) -> StoredImage | None:
        """The asset already stored under `public_id` (with its context), or None. A
        private lookup also finds the public asset a release before private images
        stored under that id (`StoredImage.private` False)."""
        ...

    def signed_url(self, public_id: str, expires_at: datetime) -> str:
        """A URL that serves the private asset `public_id` until `expires_at`, and not
        after; signing calls nothing."""
        ...

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every asset whose id starts with `prefix` (a folder: it ends with "/"),
        of every delivery type, until none is left; how many were deleted. A repeat
        deletes nothing more. Raises `TransientError` while the store cannot answer."""
        ...
