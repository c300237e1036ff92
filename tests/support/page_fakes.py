"""In-process providers for the page activity's unit tests: they count what a page paid
for (model calls, uploads, look-ups) and fail or hold on cue."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from storywink.providers.base import (
    GeneratedImage,
    IllustrationJob,
    SourceImage,
    StoredImage,
    TransientError,
)
from storywink.providers.fetch import ImageFetcher


@dataclass
class CountingIllustrator:
    """An `Illustrator` that draws `drawing-<n>` for its n-th call, or raises the next of
    `errors`; with `hold` set, each call waits for it after arriving (`arrived`)."""

    name: str = "counting"
    uses_style_reference: bool = False
    errors: list[Exception] = field(default_factory=list)
    hold: asyncio.Event | None = None
    calls: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def illustrate(self, job: IllustrationJob) -> GeneratedImage:
        self.calls += 1
        self.arrived.set()
        if self.hold is not None:
            await self.hold.wait()
        if self.errors:
            raise self.errors.pop(0)
        return GeneratedImage(data=f"drawing-{self.calls}".encode(), mime_type="image/png")


@dataclass
class MemoryStore:
    """An `ImageStore` keeping assets in memory under their public ids, as a CDN does:
    a second upload to an id overwrites it (with a new version in its URL).

    `errors`: raised by the next uploads instead of storing. `lost_answers`: that many
    next uploads are stored, then answered with a `TransientError` (the answer was lost).
    """

    name: str = "memory"
    errors: list[Exception] = field(default_factory=list)
    lost_answers: int = 0
    assets: dict[str, tuple[StoredImage, bytes]] = field(default_factory=dict)
    uploads: Counter[str] = field(default_factory=Counter)
    finds: Counter[str] = field(default_factory=Counter)
    _versions: int = 0

    def put(
        self, public_id: str, data: bytes, context: dict[str, str], *, private: bool = True
    ) -> StoredImage:
        """Store an asset directly, as an earlier attempt may have left it (`private`
        False: a public one, as releases before private images stored)."""
        self._versions += 1
        url = "" if private else f"https://cdn.test/v{self._versions}/{public_id}.png"
        stored = StoredImage(url=url, public_id=public_id, context=dict(context), private=private)
        self.assets[public_id] = (stored, data)
        return stored

    async def store(
        self,
        image: GeneratedImage,
        public_id: str,
        tags: list[str],
        context: dict[str, str],
        *,
        private: bool = True,
    ) -> StoredImage:
        self.uploads[public_id] += 1
        if self.errors:
            raise self.errors.pop(0)
        stored = self.put(public_id, image.data, context, private=private)
        if self.lost_answers:
            self.lost_answers -= 1
            raise TransientError("upload: no answer from the CDN")
        return stored

    async def find(self, public_id: str, *, private: bool = True) -> StoredImage | None:
        self.finds[public_id] += 1
        found = self.assets.get(public_id)
        return found[0] if found and found[0].private == private else None

    def signed_url(self, public_id: str, expires_at: datetime) -> str:
        return f"https://cdn.test/signed/{public_id}.png?expires_at={int(expires_at.timestamp())}"

    async def delete_prefix(self, prefix: str) -> int:
        doomed = [public_id for public_id in self.assets if public_id.startswith(prefix)]
        for public_id in doomed:
            del self.assets[public_id]
        return len(doomed)

    def data_of(self, public_id: str) -> bytes | None:
        found = self.assets.get(public_id)
        return found[1] if found else None


class CountingFetcher(ImageFetcher):
    """The real fetcher, reading file:// URLs under `file_root`, counting its fetches."""

    def __init__(self, file_root: Path) -> None:
        super().__init__(timeout_seconds=5.0, max_bytes=1_000_000, file_root=file_root)
        self.fetched: Counter[str] = Counter()

    async def fetch(self, url: str, role: str) -> SourceImage:
        self.fetched[role] += 1
        return await super().fetch(url, role)

    async def fetch_unchecked(self, url: str, role: str) -> bytes:
        self.fetched[role] += 1
        return await super().fetch_unchecked(url, role)
