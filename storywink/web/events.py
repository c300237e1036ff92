"""A book's Server-Sent Events: its progress, each page as it is drawn, then the outcome.

Every `page` event's id says which pages this client has been told about and what
(`<page>-<fingerprint>.…`), so a reconnect with `Last-Event-ID` (to this process or
another replica) is sent exactly the settled pages it has not seen, or that changed since
(redrawn by a later run): none is lost, none repeated.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from sse_starlette import ServerSentEvent

from storywink.contract import ModerationStatus
from storywink.web.schemas import PageView
from storywink.web.views import picture_route
from storywink.web.watchers import BookSnapshot, BookWatcher, PageState

FINGERPRINT_CHARS: Final = 6
MAX_PAGES_IN_ID: Final = 200
_MARK: Final = re.compile(f"^[0-9a-f]{{{FINGERPRINT_CHARS}}}$")
RETRY_MILLISECONDS: Final = 2000


@dataclass(frozen=True)
class Delivered:
    """Which settled pages a client was told about, each with the fingerprint of what it
    was told (outcome, picture, reason): a page redrawn by a later run is told again."""

    pages: tuple[tuple[int, str], ...] = ()

    def told(self, page: PageState) -> bool:
        return (page.page_number, fingerprint(page)) in self.pages

    def adding(self, page: PageState) -> Delivered:
        kept = tuple(entry for entry in self.pages if entry[0] != page.page_number)
        return Delivered((*kept, (page.page_number, fingerprint(page))))

    def encode(self) -> str:
        return ".".join(f"{number}-{mark}" for number, mark in sorted(self.pages))

    @classmethod
    def parse(cls, last_event_id: str | None) -> Delivered:
        """The position a `Last-Event-ID` names; anything else starts over."""
        pages = []
        for entry in (last_event_id or "").split(".")[:MAX_PAGES_IN_ID]:
            number, _, mark = entry.partition("-")
            if number.isdigit() and _MARK.fullmatch(mark):
                pages.append((int(number), mark))
        return cls(tuple(pages))


@lru_cache(maxsize=4096)
def fingerprint(page: PageState) -> str:
    told = f"{page.outcome.value}|{page.picture_ref}|{page.reason}"
    return hashlib.sha256(told.encode()).hexdigest()[:FINGERPRINT_CHARS]


@lru_cache(maxsize=4096)
def page_data(page: PageState, book_id: str, root: str) -> str:
    """A page event's data; encoded once for all the streams of the book. Its pictures are
    this API's routes, which sign a URL each time the browser loads one: an event may be
    read long after it was encoded."""
    return PageView(
        page_number=page.page_number,
        is_title_page=page.is_title_page,
        text=page.text,
        text_problem=None,
        outcome=page.outcome,
        reason=page.reason,
        photo_url=picture_route(root, book_id, page.photo_ref, page.page_number, "photo"),
        image_url=picture_route(root, book_id, page.picture_ref, page.page_number, "image"),
    ).model_dump_json()


@lru_cache(maxsize=256)
def progress_data(snapshot: BookSnapshot) -> str:
    """A progress event's data; encoded once per snapshot for all the book's streams."""
    progress = snapshot.progress
    return json.dumps(
        {
            "book_id": snapshot.book_id,
            "status": snapshot.status.value,
            "phase": progress.phase,
            "total": progress.total or len(snapshot.pages),
            "done": progress.done,
            "flagged": progress.flagged,
            "failed": progress.failed,
        }
    )


def _outcome_data(snapshot: BookSnapshot) -> dict[str, object]:
    outcomes = [page.outcome for page in snapshot.pages]
    return {
        "book_id": snapshot.book_id,
        "status": "GONE" if snapshot.gone else snapshot.status.value,
        "pages_total": len(outcomes),
        "pages_ok": outcomes.count(ModerationStatus.OK),
        "pages_flagged": outcomes.count(ModerationStatus.FLAGGED),
        "pages_failed": outcomes.count(ModerationStatus.FAILED),
        "story_error": snapshot.story_error,
    }


async def book_events(
    watcher: BookWatcher, resume: Delivered, root: str
) -> AsyncIterator[ServerSentEvent]:
    """The stream of one client (`root`: the prefix the app is mounted under); ends after
    the outcome."""
    delivered = resume
    last_progress: str | None = None
    version = 0
    yield ServerSentEvent(comment="connected", retry=RETRY_MILLISECONDS)
    while True:
        snapshot, version = await watcher.next_snapshot(version)
        progress = progress_data(snapshot)
        if progress != last_progress:
            last_progress = progress
            yield ServerSentEvent(data=progress, event="progress")
        for page in snapshot.pages:
            if page.settled and not delivered.told(page):
                delivered = delivered.adding(page)
                data = page_data(page, snapshot.book_id, root)
                yield ServerSentEvent(data=data, event="page", id=delivered.encode())
        if snapshot.finished:
            yield ServerSentEvent(data=json.dumps(_outcome_data(snapshot)), event="outcome")
            return
