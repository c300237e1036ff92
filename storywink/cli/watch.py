"""What `storywink illustrate` and `storywink story` show while they run, and how they end."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Final

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from temporalio.service import RPCError

from storywink.book import report as book_report
from storywink.cli.exits import ExitCode, err
from storywink.contract import BookStatus, StoryOutcome
from storywink.contract import Progress as RunProgress
from storywink.illustration.client import IllustrationClient, QueuePollers, RunEnd, RunEnding
from storywink.redact import shorten
from storywink.story.client import StoryClient
from storywink.temporal.connection import is_connection_lost

POLL_SECONDS: Final = 0.5
# With no progress for this long, `illustrate` checks that workers poll the task queues.
NO_PROGRESS_CHECK_SECONDS: Final = 5.0


def _pollers_line(queue: QueuePollers) -> str:
    seen = ""
    if queue.listed and queue.last_seen:
        ago = book_report.format_age(queue.last_seen, datetime.now(UTC))
        seen = f"; {queue.listed} last seen {ago} ago"
    return (
        f"no worker is polling {queue.kind} task queue {queue.task_queue} "
        f"({queue.live} pollers{seen}); start one with: python worker.py"
    )


class _NoWorkerWatch:
    """Says once per queue when nothing moves and no worker polls it."""

    def __init__(self, client: IllustrationClient, console: Console) -> None:
        self._client = client
        self._console = console
        self._last: tuple[str, int] | None = None
        self._quiet_since = time.monotonic()
        self._warned: set[str] = set()

    async def check(self, progress: RunProgress) -> None:
        now = time.monotonic()
        if (progress.phase, progress.done) != self._last:
            self._last = (progress.phase, progress.done)
            self._quiet_since = now
            return
        if now - self._quiet_since < NO_PROGRESS_CHECK_SECONDS:
            return
        self._quiet_since = now  # check again after as long
        for queue in await self._client.task_queue_pollers():
            if queue.live == 0 and queue.task_queue not in self._warned:
                self._warned.add(queue.task_queue)
                self._console.print(_pollers_line(queue), highlight=False)


async def watch_illustration(
    client: IllustrationClient, book_id: str, priority: int | None = None
) -> RunEnd:
    run = await client.start_illustration(book_id, priority)
    err.print(f"illustrating book {book_id} (workflow {run.workflow_id})")
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=err,
    ) as bar:
        task = bar.add_task("pages", total=None, detail="")
        watch = _NoWorkerWatch(client, err)
        ending = asyncio.ensure_future(client.wait_for_illustration_end(book_id))
        while not ending.done():
            try:
                progress = await client.illustration_progress(book_id)
                bar.update(
                    task,
                    total=progress.to_draw or None,
                    completed=progress.done,
                    description=progress.phase,
                    detail=f"{progress.flagged} flagged, {progress.failed} failed",
                )
                await watch.check(progress)
            except RPCError as exc:
                if not is_connection_lost(exc):
                    raise
                # `ending` says so, and gives up after CONNECTION_LOSS_LIMIT.
            await asyncio.wait([ending], timeout=0.5)
        end = ending.result()
        book = end.book
        bar.update(
            task,
            total=book.pages_total,
            completed=book.pages_with_image + book.pages_flagged + book.pages_failed,
            description=book.status.value,
            detail=f"{book.pages_flagged} flagged, {book.pages_failed} failed",
        )
        return end


_EXIT_FOR_STATUS: Final = {
    BookStatus.COMPLETED: ExitCode.OK,
    BookStatus.PARTIAL: ExitCode.PARTIAL,
    BookStatus.FAILED: ExitCode.FAILED,
}
_EXIT_FOR_ENDING: Final = {
    RunEnding.CANCELLED: ExitCode.CANCELLED,
    RunEnding.TERMINATED: ExitCode.TERMINATED,
    RunEnding.TIMED_OUT: ExitCode.TERMINATED,
    RunEnding.FAILED: ExitCode.REFUSED,
}


def say_connection(line: str) -> None:
    """What `illustrate` prints when it loses (and finds again) its connection to Temporal."""
    err.print(escape(line), highlight=False)


def exit_code_for(end: RunEnd) -> ExitCode:
    if end.ending in (RunEnding.COMPLETED, RunEnding.ALREADY_SETTLED):
        return _EXIT_FOR_STATUS.get(end.book.status, ExitCode.REFUSED)
    return _EXIT_FOR_ENDING[end.ending]


def ending_line(end: RunEnd) -> str:
    """`book X: PARTIAL (4/6 pages illustrated, 1 flagged, 1 failed)` and the like."""
    book = end.book
    pages = f"{book.pages_with_image}/{book.pages_total} pages illustrated"
    if book.pages_flagged or book.pages_failed:
        pages += f", {book.pages_flagged} flagged, {book.pages_failed} failed"
    if end.ending in (RunEnding.COMPLETED, RunEnding.ALREADY_SETTLED):
        return f"book {end.book_id}: {book.status.value} ({pages})"
    reason = f": {shorten(end.reason, 200)}" if end.reason else ""
    if book.status is not BookStatus.ILLUSTRATING:
        after = f"book is {book.status.value}: {pages}"
    else:
        after = (
            f"book is still {book.status.value}: {pages}; "
            f"`storywink illustrate {end.book_id}` starts a run that takes it over"
        )
    what = "run failed" if end.ending is RunEnding.FAILED else end.ending.value
    return f"book {end.book_id}: {what}{reason} ({after})"


async def watch_story(client: StoryClient, book_id: str) -> StoryOutcome:
    """Start (or join) the book's story run and show its phase until it ends."""
    run = await client.start_story(book_id)
    err.print(f"writing the story of book {book_id} (workflow {run.workflow_id})")
    with err.status("starting") as status:
        ending = asyncio.ensure_future(client.wait_for_story(book_id))
        while not ending.done():
            progress = await client.story_progress(book_id)
            status.update(f"{progress.phase} ({progress.pages} pages)")
            await asyncio.wait([ending], timeout=POLL_SECONDS)
        return ending.result()
