"""Building blocks for the integration tests: real workers, sample books."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import select
from temporalio.client import Client, WorkflowHandle

from storywink import contract
from storywink.book.records import get_book
from storywink.config import Settings
from storywink.contract import (
    STORY_WORKFLOW,
    BookOutcome,
    BookStatus,
    IllustrationRequest,
    ModerationStatus,
    StoryOutcome,
    StoryRequest,
    story_workflow_id,
)
from storywink.db.connection import Database
from storywink.db.models import Book, Notification, Page
from storywink.demo.sample_book import write_sample_photos
from storywink.providers.factory import Providers, build_providers
from storywink.worker.assembly import build_workers
from tests.support.builders import new_book, story_texts
from tests.support.services import tool_path


@asynccontextmanager
async def running_worker(
    client: Client, settings: Settings, database: Database, providers: Providers | None = None
) -> AsyncIterator[Providers]:
    """A real worker (both pollers) in this process, as `python worker.py` builds it."""
    providers = providers or build_providers(settings)
    async with AsyncExitStack() as stack:
        for worker in build_workers(client, settings, database, providers):
            await stack.enter_async_context(worker)
        yield providers
    await providers.aclose()


def photo_urls(directory: Path, count: int) -> list[str]:
    return [path.resolve().as_uri() for path in write_sample_photos(directory, count)]


def create_book(
    database: Database,
    photo_urls: Sequence[str | None],
    *,
    status: BookStatus = BookStatus.STORY_READY,
    art_style: str = "vignette",
    title: str = "Mia's Big Day",
    user_id: str = "user-1",
) -> str:
    with database.sessions() as session:
        texts = story_texts(title, len(photo_urls))
        return new_book(
            session,
            photo_urls,
            texts=texts,
            status=status,
            title=title,
            user_id=user_id,
            art_style=art_style,
        ).id


async def start(
    client: Client, settings: Settings, book_id: str, priority: int | None = None
) -> WorkflowHandle[object, BookOutcome]:
    return await client.start_workflow(
        contract.BOOK_ILLUSTRATION_WORKFLOW,
        IllustrationRequest(book_id=book_id, priority=priority),
        id=contract.illustration_workflow_id(book_id),
        task_queue=settings.temporal_task_queue,
        result_type=BookOutcome,
    )


async def illustrate(
    client: Client,
    settings: Settings,
    database: Database,
    book_id: str,
    *,
    history: str | None = None,
) -> BookOutcome:
    """Illustrate the book with a worker running for just this run; its outcome. The
    run's history is kept as `history` when recording (see `keep_history`)."""
    async with running_worker(client, settings, database):
        handle = await start(client, settings, book_id)
        outcome = await handle.result()
    if history:
        await keep_history(handle, history)
    return outcome


def picture_id(database: Database, book_id: str, page_number: int, version: int = 0) -> str:
    """The asset id the pipeline stores a page's picture under (named with the book's salt)."""
    with database.sessions() as session:
        salt = get_book(session, book_id).asset_salt
    return contract.page_public_id(book_id, page_number, version, salt)


def load_book(database: Database, book_id: str) -> tuple[Book, list[Page], list[Notification]]:
    with database.sessions() as session:
        book = get_book(session, book_id)
        pages = list(book.pages)
        notes = list(session.scalars(select(Notification).where(Notification.book_id == book_id)))
        session.expunge_all()
        return book, pages, notes


async def wait_until(condition: Callable[[], bool], within: float = 30.0) -> None:
    """Poll `condition` until it holds; fail the test after `within` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within:g}s")
        await asyncio.sleep(0.02)


async def keep_history(handle: WorkflowHandle[Any, Any], name: str) -> None:
    """With STORYWINK_RECORD_HISTORIES=DIR, write the run's history to DIR/<name>.json for
    the replay tests (tests/histories/README.md says when to record)."""
    target = os.environ.get("STORYWINK_RECORD_HISTORIES")
    if target:
        history = await handle.fetch_history()
        (Path(target) / f"{name}.json").write_text(history.to_json())


async def temporal_cli(
    settings: Settings, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run the real `temporal` CLI against the settings' server, off the event loop (an
    in-process worker keeps running). With `check`, a failure fails the test with stderr."""
    done = await asyncio.to_thread(
        subprocess.run,
        [tool_path("temporal"), *args, "--address", settings.temporal_address],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert not check or done.returncode == 0, f"temporal {' '.join(args)}: {done.stderr}"
    return done


def model_calls(database: Database, book_id: str) -> list[int]:
    """How many model calls each page cost, as the page activity counted them."""
    _, pages, _ = load_book(database, book_id)
    return [page.model_calls for page in pages]


def recorded(database: Database, book_id: str, *numbers: int) -> bool:
    """Whether these pages (by number) have their outcome recorded."""
    _, pages, _ = load_book(database, book_id)
    return all(pages[n - 1].moderation_status is not ModerationStatus.PENDING for n in numbers)


async def start_story(
    client: Client, task_queue: str, book_id: str
) -> WorkflowHandle[object, StoryOutcome]:
    return await client.start_workflow(
        STORY_WORKFLOW,
        StoryRequest(book_id=book_id),
        id=story_workflow_id(book_id),
        task_queue=task_queue,
        result_type=StoryOutcome,
    )


def draft_book(database: Database, urls: Sequence[str], title: str = "Mia's Big Day") -> str:
    """A book as `storywink book create` leaves it without --story: DRAFT, no text."""
    with database.sessions() as session:
        return new_book(session, urls, status=BookStatus.DRAFT, title=title).id
