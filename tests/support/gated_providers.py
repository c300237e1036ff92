"""Providers an operator test holds at a chosen step, to act on the run right there.

They wrap the real offline illustrator and local store; a page is known by its text
("Page n of the story." from tests.support.helpers.create_book; the title page by the title).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from storywink.providers.base import (
    GeneratedImage,
    IllustrationJob,
    Illustrator,
    ImageStore,
    StoredImage,
)


@dataclass
class Gate:
    """Holds the pages named in `held` (or every page after the first `pass_first` to
    arrive) until `release()`; counts who reached it."""

    held: set[int] = field(default_factory=set)
    pass_first: int | None = None
    reached: Counter[int] = field(default_factory=Counter)
    _open: asyncio.Event = field(default_factory=asyncio.Event)

    def release(self) -> None:
        self._open.set()

    async def pass_through(self, page: int) -> None:
        self.reached[page] += 1
        arrivals = sum(self.reached.values())
        if page in self.held or (self.pass_first is not None and arrivals > self.pass_first):
            await self._open.wait()

    def waiting(self, *pages: int) -> bool:
        return all(self.reached[page] >= 1 for page in pages)


def page_of(job: IllustrationJob) -> int:
    if job.is_title_page:
        return 1
    assert job.text is not None
    return int(job.text.split()[1])


def page_of_tags(tags: list[str]) -> int:
    """The page a picture's upload is for, from its `page_<n>` tag (its id does not say)."""
    return next(int(tag.removeprefix("page_")) for tag in tags if tag.startswith("page_"))


class GatedIllustrator:
    """The offline illustrator, held inside the model call for the gate's pages."""

    def __init__(self, inner: Illustrator, gate: Gate) -> None:
        self.name = inner.name
        self.uses_style_reference = inner.uses_style_reference
        self._inner = inner
        self.gate = gate

    async def illustrate(self, job: IllustrationJob) -> GeneratedImage:
        await self.gate.pass_through(page_of(job))
        return await self._inner.illustrate(job)


class StoredThenHeldStore:
    """The local store; for the gate's pages the image is stored, then the answer is
    held, as when a CDN stored an upload whose answer never got back."""

    def __init__(self, inner: ImageStore, gate: Gate) -> None:
        self.name = inner.name
        self._inner = inner
        self.gate = gate

    async def store(
        self,
        image: GeneratedImage,
        public_id: str,
        tags: list[str],
        context: dict[str, str],
        *,
        private: bool = True,
    ) -> StoredImage:
        stored = await self._inner.store(image, public_id, tags, context, private=private)
        await self.gate.pass_through(page_of_tags(tags))
        return stored

    async def find(self, public_id: str, *, private: bool = True) -> StoredImage | None:
        return await self._inner.find(public_id, private=private)

    def signed_url(self, public_id: str, expires_at: datetime) -> str:
        return self._inner.signed_url(public_id, expires_at)

    async def delete_prefix(self, prefix: str) -> int:
        return await self._inner.delete_prefix(prefix)
