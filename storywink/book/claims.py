"""The claim protocol every run kind follows, on the Temporal side: is the run holding a
book's claim still running; an activity takes over a stale claim, then claims; a client
joins the run holding the book, or starts the book's own.

A claim (`storywink.book.records`) names the workflow id and the *chain* of the run
holding the book: its first run id, which a reset keeps (`first_execution_run_id` in the
workflow, `first_run_id` in a description). So a run that was reset still holds its
book, and a new start under the same workflow id (a new chain) does not.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client, WorkflowExecutionDescription, WorkflowExecutionStatus
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError, RPCStatusCode

from storywink.book.records import Claim, RunKind, claim, read_claim
from storywink.book.refusals import check_workflow_id_names, refuse_while_erased
from storywink.contract import BookStatus
from storywink.db.engine import in_session
from storywink.db.models import Book

log = logging.getLogger(__name__)
Plan = TypeVar("Plan")


class RunIdentity(Protocol):
    """What a run's claim activity is given: the book, and who the run is."""

    @property
    def book_id(self) -> str: ...
    @property
    def workflow_id(self) -> str: ...
    @property
    def run_id(self) -> str: ...  # the run's chain


@dataclass(frozen=True)
class ClaimRun:
    """The latest run of the claim's chain, as Temporal describes it."""

    status: WorkflowExecutionStatus | None  # None: Temporal knows no such workflow
    run_id: str | None = None
    description: WorkflowExecutionDescription | None = None

    @property
    def running(self) -> bool:
        return self.status is WorkflowExecutionStatus.RUNNING


async def describe_claim(temporal: Client, workflow_id: str, chain_run_id: str) -> ClaimRun:
    """The state of the run holding a claim: the workflow's latest run when it belongs to
    the claim's chain, else the chain's own first run."""
    latest = await describe_run(temporal, workflow_id, None)
    if latest is not None and _chain_of(latest) == chain_run_id:
        return ClaimRun(latest.status, latest.run_id, latest)
    first = await describe_run(temporal, workflow_id, chain_run_id)
    if first is None:
        return ClaimRun(None)
    # Its chain was followed by another start under the same workflow id: it has ended.
    return ClaimRun(first.status, first.run_id, first)


def _chain_of(description: WorkflowExecutionDescription) -> str:
    first = description.raw_description.workflow_execution_info.first_run_id
    return first or description.run_id


async def describe_run(
    temporal: Client, workflow_id: str, run_id: str | None = None
) -> WorkflowExecutionDescription | None:
    """The run (the workflow's latest when `run_id` is None), or None if Temporal knows
    no such workflow, or `run_id` cannot name a run (not a UUID: written by hand or by
    the system we replaced)."""
    if run_id is not None and not _is_uuid(run_id):
        return None
    try:
        return await temporal.get_workflow_handle(workflow_id, run_id=run_id).describe()
    except RPCError as exc:
        if exc.status is not RPCStatusCode.NOT_FOUND:
            raise
        return None


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


async def is_running(temporal: Client, workflow_id: str) -> bool:
    """Whether the workflow's latest run is running."""
    latest = await describe_run(temporal, workflow_id)
    return latest is not None and latest.status is WorkflowExecutionStatus.RUNNING


async def stale_claim(
    sessions: sessionmaker[Session],
    temporal: Client,
    kind: RunKind,
    book_id: str,
    run_id: str,
) -> str | None:
    """The claim a run of `kind` starting on `book_id` may take over: the one holding the
    book (as `kind.holding`) when its run has ended without settling it. None when no
    other claim holds the book; `kind.busy` is raised when the run holding it still runs."""
    held = await in_session(sessions, read_claim, book_id)
    if held.status is not kind.holding or held.run_id in (None, run_id):
        return None
    assert held.workflow_id is not None and held.run_id is not None
    holder = await describe_claim(temporal, held.workflow_id, held.run_id)
    if holder.running:
        raise kind.busy(book_id, held.workflow_id)
    log.warning(
        "book %s was held by workflow %s run %s which ended (%s); taking it over",
        book_id,
        held.workflow_id,
        held.run_id,
        holder.status.name if holder.status else "unknown to Temporal",
    )
    return held.run_id


async def claim_for_run(
    sessions: sessionmaker[Session],
    temporal: Client,
    kind: RunKind,
    run: RunIdentity,
    plan: Callable[[Book, str | None], Plan],
) -> Plan:
    """A run's claim activity: refuse a workflow id naming another book, take over a
    stale claim, claim the book, and return `plan(book, stale_run_id)`, made in the
    claim's session (`stale_run_id`: the run whose claim was taken over, or None)."""
    check_workflow_id_names(run.book_id, run.workflow_id, kind.workflow_id_prefix)
    stale_run_id = await stale_claim(sessions, temporal, kind, run.book_id, run.run_id)

    def claim_and_plan(session: Session) -> Plan:
        book = claim(
            session, kind, run.book_id, run.workflow_id, run.run_id, stale_run_id=stale_run_id
        )
        return plan(book, stale_run_id)

    return await in_session(sessions, claim_and_plan)


@dataclass(frozen=True)
class BookRun:
    """The run a client started or joined for a book."""

    book_id: str
    workflow_id: str
    run_id: str | None


async def join_or_start(
    sessions: sessionmaker[Session],
    temporal: Client,
    kind: RunKind,
    book_id: str,
    request: object,
    *,
    task_queue: str,
    result_type: type,
    memo: Mapping[str, Any] | None = None,
    signal: tuple[str, object] | None = None,
) -> BookRun:
    """The run of `kind` holding the book while it runs, else the book's own workflow
    started (or joined, when it already runs) with `request`. With `signal` (its name and
    argument), the book's own workflow gets it, started for it if need be
    (signal-with-start): how an ask joins the run at work (a redraw's page).

    Raises `BookNotFound`, `kind.not_ready` when the book's status refuses the run, or
    `kind.busy` when a run of another kind (or, for a signal, under another workflow id)
    holds the book."""
    held = await in_session(sessions, read_claim, book_id)
    if kind.holding is not BookStatus.ERASING:
        refuse_while_erased(book_id, held.status, held.workflow_id)
    own_id = kind.workflow_id(book_id)
    if held.status is kind.holding and held.workflow_id:
        holder = await describe_claim(temporal, held.workflow_id, held.run_id or "")
        if holder.running:
            # Kinds may share a holding status (a redraw holds a book ILLUSTRATING).
            described = holder.description
            other_kind = described is not None and described.workflow_type != kind.workflow_type
            if other_kind or (signal is not None and held.workflow_id != own_id):
                raise kind.busy(book_id, held.workflow_id)
            if signal is None:
                return BookRun(book_id, held.workflow_id, held.run_id)
        # Else the run holding the book ended without settling it (terminated): the new
        # run takes the claim over when it claims the book.
    elif held.status not in kind.start_from:
        raise kind.not_ready(book_id, held.status)
    # Double clicks, two web replicas, the CLI: all land on the same run (a signal-with-
    # start always does: it signals the running one).
    joining: dict[str, Any] = (
        {"start_signal": signal[0], "start_signal_args": [signal[1]]}
        if signal is not None
        else {"id_conflict_policy": WorkflowIDConflictPolicy.USE_EXISTING}
    )
    handle = await temporal.start_workflow(
        kind.workflow_type,
        request,
        id=own_id,
        task_queue=task_queue,
        result_type=result_type,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        memo=memo,
        **joining,
    )
    return BookRun(book_id, handle.id, handle.result_run_id)


async def workflow_working_on(
    sessions: sessionmaker[Session], temporal: Client, kind: RunKind, book_id: str
) -> str | None:
    """The workflow id whose latest run of `kind` works on the book, or None when none does.

    That is the claim's workflow while the book is `kind.holding`, unless its run ended and
    the book's own workflow runs again to take the claim over; otherwise the book's own
    workflow if a run of it has started and not claimed the book yet."""
    held = await in_session(sessions, read_claim, book_id)
    return await _working_on(temporal, held, kind.holding, kind.workflow_id(book_id))


async def _working_on(
    temporal: Client, held: Claim, holding: object, own_workflow_id: str
) -> str | None:
    if held.status is holding and held.workflow_id:
        if (
            held.workflow_id != own_workflow_id
            and not await is_running(temporal, held.workflow_id)
            and await is_running(temporal, own_workflow_id)
        ):
            return own_workflow_id
        return held.workflow_id
    return own_workflow_id if await is_running(temporal, own_workflow_id) else None
