"""The operator's view of the books: what is in progress, what settled lately, what is stuck.

A book is stuck when its row says ILLUSTRATING, GENERATING or ERASING but no running
workflow run (an illustration, a story or an erasure run) holds it: the run named by the
claim ended without settling the book (terminated, timed out) or Temporal does not know
it. Nothing moves such a book on by itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import TypeVar

from pydantic import computed_field
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHistoryEventFilterType
from temporalio.service import RPCError

from storywink import contract
from storywink.book.claims import describe_claim, describe_run
from storywink.contract import (
    SETTLED_STATUSES,
    BookStatus,
    Frozen,
    ModerationStatus,
    story_workflow_id,
)
from storywink.db.engine import in_session
from storywink.db.models import Book, Page
from storywink.erasure.contract import erasure_workflow_id
from storywink.redact import shorten
from storywink.temporal.connection import TemporalUnavailable
from storywink.temporal.failures import innermost_message

T = TypeVar("T")

IN_PROGRESS_STATUSES = (BookStatus.ILLUSTRATING, BookStatus.GENERATING, BookStatus.ERASING)
DEFAULT_RECENT = 10
MAX_CONCURRENT_DESCRIBES = 8
REASON_LIMIT = 200


class PageCounts(Frozen):
    total: int = 0
    ok: int = 0
    flagged: int = 0
    failed: int = 0
    pending: int = 0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def settled(self) -> int:
        return self.total - self.pending


class RunState(StrEnum):
    RUNNING = "running"  # the run named by the claim is running: all is well
    ENDED = "ended"  # that run closed without settling the book
    NOT_FOUND = "not_found"  # Temporal knows no such run (never started, or purged)
    NO_RUN = "no_run"  # the row names no run at all


class RunCheck(Frozen):
    """What Temporal says about the run holding an in-progress book."""

    state: RunState
    temporal_status: str | None = None  # of the claim's run, e.g. "TERMINATED"
    started_at: datetime | None = None
    replacement_run_id: str | None = None  # another run of the book's workflow, running
    reason: str | None = None  # why the claim's run ended, from its close event; one line
    hint: str | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def stuck(self) -> bool:
        return self.state is not RunState.RUNNING

    @property
    def summary(self) -> str:
        if self.state is RunState.ENDED:
            return f"run {(self.temporal_status or 'closed').lower()}"
        return {
            RunState.RUNNING: "running",
            RunState.NOT_FOUND: "run not found in Temporal",
            RunState.NO_RUN: "no run recorded",
        }[self.state]


class BookInProgress(Frozen):
    book_id: str
    title: str
    status: BookStatus
    pages: PageCounts
    workflow_id: str | None
    run_id: str | None
    updated_at: datetime  # the book or one of its pages, whichever changed last
    run: RunCheck | None = None  # None until checked with Temporal

    @computed_field  # type: ignore[prop-decorator]
    @property
    def stuck(self) -> bool:
        return self.run is not None and self.run.stuck


class RecentOutcome(Frozen):
    book_id: str
    title: str
    status: BookStatus
    pages: PageCounts
    updated_at: datetime
    cost_usd: float = 0.0  # the book's model calls at known prices (storywink.cost)


class BooksReport(Frozen):
    generated_at: datetime
    in_progress: tuple[BookInProgress, ...]
    recent: tuple[RecentOutcome, ...]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def stuck(self) -> tuple[str, ...]:
        return tuple(book.book_id for book in self.in_progress if book.stuck)

    def ago(self, moment: datetime | None) -> str:
        return format_age(moment, self.generated_at) if moment else "-"


def as_utc(moment: datetime) -> datetime:
    """SQLite hands timestamps back without their zone; they were written in UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def format_age(moment: datetime, now: datetime) -> str:
    """`45s`, `3m 12s`, `2h 05m`, `3d 4h`: how long ago, to the two largest units."""
    seconds = max(0, int((as_utc(now) - as_utc(moment)).total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {seconds:02d}s"
    return f"{seconds}s"


def _page_stats(
    session: Session, book_ids: Sequence[str]
) -> dict[str, tuple[PageCounts, datetime | None]]:
    """Per book: its pages counted by outcome, and when a page last changed."""
    counts: dict[str, dict[ModerationStatus, int]] = {book_id: {} for book_id in book_ids}
    last_change: dict[str, datetime] = {}
    rows = session.execute(
        select(Page.book_id, Page.moderation_status, func.count(), func.max(Page.updated_at))
        .where(Page.book_id.in_(book_ids))
        .group_by(Page.book_id, Page.moderation_status)
    )
    for book_id, status, count, changed in rows:
        counts[book_id][status] = count
        if changed is not None:
            changed = as_utc(changed)
            last_change[book_id] = max(changed, last_change.get(book_id, changed))
    return {
        book_id: (
            PageCounts(
                total=sum(by_status.values()),
                ok=by_status.get(ModerationStatus.OK, 0),
                flagged=by_status.get(ModerationStatus.FLAGGED, 0),
                failed=by_status.get(ModerationStatus.FAILED, 0),
                pending=by_status.get(ModerationStatus.PENDING, 0),
            ),
            last_change.get(book_id),
        )
        for book_id, by_status in counts.items()
    }


def books_in_progress(session: Session) -> list[BookInProgress]:
    """Books whose row says a run is working on them, longest untouched first."""
    found = list(session.scalars(select(Book).where(Book.status.in_(IN_PROGRESS_STATUSES))))
    stats = _page_stats(session, [book.id for book in found])
    result = []
    for book in found:
        pages, page_changed = stats[book.id]
        updated_at = as_utc(book.updated_at)
        result.append(
            BookInProgress(
                book_id=book.id,
                title=book.title,
                status=book.status,
                pages=pages,
                workflow_id=book.claim_workflow_id,
                run_id=book.claim_run_id,
                updated_at=max(updated_at, page_changed) if page_changed else updated_at,
            )
        )
    return sorted(result, key=lambda book: (book.updated_at, book.book_id))


def recent_outcomes(session: Session, limit: int = DEFAULT_RECENT) -> list[RecentOutcome]:
    """The books settled most recently, newest first."""
    found = list(
        session.scalars(
            select(Book)
            .where(Book.status.in_(sorted(SETTLED_STATUSES)))
            .order_by(Book.updated_at.desc(), Book.id)
            .limit(limit)
        )
    )
    stats = _page_stats(session, [book.id for book in found])
    return [
        RecentOutcome(
            book_id=book.id,
            title=book.title,
            status=book.status,
            pages=stats[book.id][0],
            updated_at=as_utc(book.updated_at),
            cost_usd=book.cost_micro_usd / 1_000_000,
        )
        for book in found
    ]


def current_claims(
    session: Session, book_ids: Sequence[str]
) -> dict[str, tuple[BookStatus, str | None]]:
    rows = session.execute(
        select(Book.id, Book.status, Book.claim_run_id).where(Book.id.in_(book_ids))
    )
    return {book_id: (status, run_id) for book_id, status, run_id in rows}


def _start_command(book_id: str, task_queue: str) -> str:
    return (
        f"temporal workflow start --type {contract.BOOK_ILLUSTRATION_WORKFLOW} "
        f"--task-queue {task_queue} --workflow-id {contract.illustration_workflow_id(book_id)} "
        f'--input \'{{"book_id": "{book_id}"}}\''
    )


def _story_hint(book: BookInProgress, check: RunCheck) -> str:
    if check.state is RunState.NO_RUN:
        return "no story run is recorded: set the book back to DRAFT, then `storywink story`"
    if check.replacement_run_id:
        return f"story run {check.replacement_run_id} is running and takes the claim over"
    return f"start a new story run; it takes the stale claim over: `storywink story {book.book_id}`"


def _hint(book: BookInProgress, check: RunCheck, task_queue: str) -> str:
    if book.status is BookStatus.GENERATING:
        return _story_hint(book, check)
    if book.status is BookStatus.ERASING and check.state is not RunState.NO_RUN:
        return (
            "its erasure ended half-way (some assets may be gone): finish it, a new erasure "
            f"takes the claim over: `storywink book delete {book.book_id}`"
        )
    if check.state is RunState.NO_RUN:
        return (
            "no run is recorded, so no new run can take the claim over: set the status back "
            "(PARTIAL, or STORY_READY to redraw every page), then "
            f"`storywink illustrate {book.book_id}`"
        )
    if check.replacement_run_id:
        return (
            f"run {check.replacement_run_id} is running and takes the claim over when it "
            f"prepares; if this lasts, check that a worker polls task queue {task_queue}"
        )
    return (
        "start a new run; it takes the stale claim over when it prepares: "
        f"`storywink illustrate {book.book_id}`, or " + _start_command(book.book_id, task_queue)
    )


async def _unless_unreachable(describing: Awaitable[T], workflow_id: str) -> T:
    try:
        return await describing
    except RPCError as exc:
        raise TemporalUnavailable(f"cannot describe workflow {workflow_id}: {exc}") from None


async def _close_reason(temporal: Client, event: HistoryEvent) -> str | None:
    if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED:
        reason = event.workflow_execution_terminated_event_attributes.reason
        return reason or "no reason given"
    if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
        failure = event.workflow_execution_failed_event_attributes.failure
        error = await temporal.data_converter.decode_failure(failure)
        return innermost_message(error) or ""
    if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT:
        return "the run outlived its run or execution timeout"
    if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED:
        return "the run was cancelled before it settled the book"
    return None


async def run_end_reason(temporal: Client, workflow_id: str, run_id: str) -> str | None:
    """Why a closed run ended, from the close event of its history, in one short line."""
    handle = temporal.get_workflow_handle(workflow_id, run_id=run_id)
    try:
        async for event in handle.fetch_history_events(
            event_filter_type=WorkflowHistoryEventFilterType.CLOSE_EVENT
        ):
            reason = await _close_reason(temporal, event)
            return shorten(reason, REASON_LIMIT) if reason else None
    except RPCError:
        return None  # purged meanwhile, or unreadable: the status alone still says a lot
    return None


def _own_workflow_id(book: BookInProgress) -> str:
    """The book's own workflow for its status: its story run or its illustration run."""
    if book.status is BookStatus.GENERATING:
        return story_workflow_id(book.book_id)
    if book.status is BookStatus.ERASING:
        return erasure_workflow_id(book.book_id)
    return contract.illustration_workflow_id(book.book_id)


async def check_run(temporal: Client, book: BookInProgress, task_queue: str) -> RunCheck:
    """Ask Temporal whether the run named by the book's claim is running."""
    if book.run_id is None:
        check = RunCheck(state=RunState.NO_RUN)
    else:
        workflow_id = book.workflow_id or _own_workflow_id(book)
        holder = await _unless_unreachable(
            describe_claim(temporal, workflow_id, book.run_id), workflow_id
        )  # the claim's chain: a reset run still holds the book
        if holder.status is None or holder.description is None:
            check = RunCheck(state=RunState.NOT_FOUND)
        else:
            check = RunCheck(
                state=RunState.RUNNING if holder.running else RunState.ENDED,
                temporal_status=holder.status.name,
                started_at=holder.description.start_time,
            )
            if check.state is RunState.ENDED:
                reason = await run_end_reason(temporal, workflow_id, holder.run_id or book.run_id)
                check = check.model_copy(update={"reason": reason})
        if check.stuck:
            own = _own_workflow_id(book)
            latest = await _unless_unreachable(describe_run(temporal, own), own)
            if latest and latest.status is WorkflowExecutionStatus.RUNNING:
                check = check.model_copy(update={"replacement_run_id": latest.run_id})
    if check.stuck:
        check = check.model_copy(update={"hint": _hint(book, check, task_queue)})
    return check


async def check_runs(
    temporal: Client, found: Sequence[BookInProgress], task_queue: str
) -> list[BookInProgress]:
    """The books with their run checked, a few describes at a time."""
    limit = asyncio.Semaphore(MAX_CONCURRENT_DESCRIBES)

    async def one(book: BookInProgress) -> BookInProgress:
        async with limit:
            return book.model_copy(update={"run": await check_run(temporal, book, task_queue)})

    return list(await asyncio.gather(*(one(book) for book in found)))


async def build_report(
    temporal: Client,
    sessions: sessionmaker[Session],
    task_queue: str,
    *,
    recent: int = DEFAULT_RECENT,
) -> BooksReport:
    generated_at = datetime.now(UTC)
    found = await in_session(sessions, books_in_progress)
    outcomes = await in_session(sessions, recent_outcomes, recent)
    checked = await check_runs(temporal, found, task_queue)
    suspects = [book.book_id for book in checked if book.stuck]
    if suspects:
        # Finalize settles the row before its run closes: a run seen closed whose book
        # has since changed was finishing, not stuck.
        now = await in_session(sessions, current_claims, suspects)
        checked = [
            book
            for book in checked
            if not book.stuck or now.get(book.book_id) == (book.status, book.run_id)
        ]
    return BooksReport(
        generated_at=generated_at, in_progress=tuple(checked), recent=tuple(outcomes)
    )
