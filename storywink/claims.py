"""Is the run that holds a book's claim still running? One answer for every caller.

A claim names the workflow id and the *chain* of the run holding the book: its first run
id, which a reset keeps (`first_execution_run_id` in the workflow, `first_run_id` in a
description). So a run that was reset still holds its book, and a new start under the
same workflow id (a new chain) does not.
"""

from __future__ import annotations

from dataclasses import dataclass

from temporalio.client import Client, WorkflowExecutionDescription, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode


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
    no such workflow."""
    try:
        return await temporal.get_workflow_handle(workflow_id, run_id=run_id).describe()
    except RPCError as exc:
        if exc.status is not RPCStatusCode.NOT_FOUND:
            raise
        return None


async def is_running(temporal: Client, workflow_id: str) -> bool:
    """Whether the workflow's latest run is running."""
    latest = await describe_run(temporal, workflow_id)
    return latest is not None and latest.status is WorkflowExecutionStatus.RUNNING
