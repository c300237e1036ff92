"""Is the run that holds a book's claim still running? One answer for every caller.

A claim names the workflow id and the *chain* of the run holding the book: its first run
id, which a reset keeps (`first_execution_run_id` in the workflow, `first_run_id` in a
description). So a run that was reset still holds its book, and a new start under the
same workflow id (a new chain) does not.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client, WorkflowExecutionDescription, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from storywink.book.refusals import BookBusy
from storywink.contract import BookStatus
from storywink.db.engine import in_session
from storywink.illustration import records as books

log = logging.getLogger(__name__)


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
    book_id: str,
    run_id: str,
    *,
    held_as: BookStatus,
    busy: type[BookBusy] = BookBusy,
) -> str | None:
    """The claim a run starting on `book_id` may take over: the one holding the book (as
    `held_as`) when its run has ended without settling it. None when no other claim holds
    the book; `busy` is raised when the run holding it still runs."""
    claim = await in_session(sessions, books.read_claim, book_id)
    if claim.status is not held_as or claim.run_id in (None, run_id):
        return None
    assert claim.workflow_id is not None and claim.run_id is not None
    holder = await describe_claim(temporal, claim.workflow_id, claim.run_id)
    if holder.running:
        raise busy(book_id, claim.workflow_id)
    log.warning(
        "book %s was held by workflow %s run %s which ended (%s); taking it over",
        book_id,
        claim.workflow_id,
        claim.run_id,
        holder.status.name if holder.status else "unknown to Temporal",
    )
    return claim.run_id


async def workflow_working_on(
    temporal: Client, claim: books.Claim, held_as: BookStatus, own_workflow_id: str
) -> str | None:
    """The workflow id whose latest run works on the book, or None when none does.

    That is the claim's workflow while the book is `held_as`, unless its run ended and the
    book's own workflow runs again to take the claim over; otherwise the book's own
    workflow if a run of it has started and not claimed the book yet."""
    if claim.status is held_as and claim.workflow_id:
        if (
            claim.workflow_id != own_workflow_id
            and not await is_running(temporal, claim.workflow_id)
            and await is_running(temporal, own_workflow_id)
        ):
            return own_workflow_id
        return claim.workflow_id
    return own_workflow_id if await is_running(temporal, own_workflow_id) else None
