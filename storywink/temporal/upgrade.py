"""Runs an earlier release started that this code cannot replay, moved onto this code.

Releases before the search attributes (up to c0ae7f7) scheduled the `prepare` activity as
their first command; this code upserts `BookId` first. No one workflow code replays both
(the two first workflow tasks start from the same events and neither records a patch
marker, so `workflow.patched` answers alike on both), and today's code must replay the
release before it. So such a run would fail its every workflow task with a nondeterminism
error and strand its book.

The worker moves them at start, and `storywink runs upgrade` on demand: each open run whose
history this code's Replayer refuses with a nondeterminism error is reset to its first
workflow task. The new run belongs to the same chain, so it holds the book's claim and goes
on with the pages the earlier run recorded: a page already drawn is not drawn again. A
cancel the operator had asked of the old run is asked of the new one.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType, ResetReapplyType
from temporalio.api.workflowservice.v1 import ResetWorkflowExecutionRequest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHistory
from temporalio.runtime import Runtime, TelemetryConfig
from temporalio.worker import Replayer
from temporalio.workflow import NondeterminismError

from storywink import contract

log = logging.getLogger("storywink.upgrade")


def runs_without_book_id(task_queue: str) -> str:
    """Runs no release since the search attributes can have started: no `BookId` yet. A
    run whose first workflow task has not completed matches too, and replays: it is left
    alone. Only the runs of `task_queue`: another app's runs in the namespace are not ours."""
    return (
        f"WorkflowType = '{contract.BOOK_ILLUSTRATION_WORKFLOW}' AND ExecutionStatus = "
        f"'Running' AND TaskQueue = '{task_queue}' AND {contract.BOOK_ID_ATTRIBUTE.name} IS NULL"
    )


def all_open_runs(task_queue: str) -> str:
    """Every open run of ours, for `storywink runs upgrade --all` after a future break."""
    return (
        f"WorkflowType IN ('{contract.BOOK_ILLUSTRATION_WORKFLOW}', "
        f"'{contract.STORY_WORKFLOW}') AND ExecutionStatus = 'Running' "
        f"AND TaskQueue = '{task_queue}'"
    )


@dataclass(frozen=True)
class StrandedRun:
    """An open run this code cannot replay, and why (the nondeterminism error's first line)."""

    workflow_id: str
    run_id: str
    problem: str
    history: WorkflowHistory


@dataclass(frozen=True)
class MovedRun:
    workflow_id: str
    old_run_id: str
    new_run_id: str
    problem: str


async def stranded_runs(
    client: Client, workflows: Sequence[type], query: str
) -> AsyncIterator[StrandedRun]:
    """The runs `query` finds whose history `workflows` refuse with a nondeterminism error."""
    replayer = Replayer(
        workflows=list(workflows), data_converter=contract.DATA_CONVERTER, runtime=_quiet()
    )
    async for execution in client.list_workflows(query):
        handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
        history = await handle.fetch_history()
        result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        if isinstance(result.replay_failure, NondeterminismError):
            problem = _message(result.replay_failure)
            yield StrandedRun(execution.id, execution.run_id, problem, history)


def _message(error: NondeterminismError) -> str:
    """The core's own message ('[TMPRL1100] Nondeterminism error: …') out of the activation
    failure the SDK wraps it in."""
    text = str(error)
    found = re.search(r'message: "([^"]+)"', text)
    return found.group(1) if found else text.splitlines()[0]


@functools.cache
def _quiet() -> Runtime:
    """A runtime for the replays that does not log: the SDK core would print a warning of
    every nondeterminism error it finds, which here is the expected answer."""
    return Runtime(telemetry=TelemetryConfig(logging=None))


def _first_workflow_task_end(history: WorkflowHistory) -> int:
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            return event.event_id
    raise ValueError(f"{history.workflow_id}: no completed workflow task to reset to")


def _cancel_requested(history: WorkflowHistory) -> bool:
    return any(
        event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED
        for event in history.events
    )


async def move_to_this_code(client: Client, run: StrandedRun) -> MovedRun | None:
    """Reset the run to its first workflow task; None if it ended or was moved meanwhile
    (workers starting together: the request id also makes a repeated reset one reset)."""
    handle = client.get_workflow_handle(run.workflow_id, run_id=run.run_id)
    if (await handle.describe()).status is not WorkflowExecutionStatus.RUNNING:
        return None
    response = await client.workflow_service.reset_workflow_execution(
        ResetWorkflowExecutionRequest(
            namespace=client.namespace,
            workflow_execution=WorkflowExecution(workflow_id=run.workflow_id, run_id=run.run_id),
            reason=f"upgrade: run from an earlier release this code cannot replay ({run.problem})",
            workflow_task_finish_event_id=_first_workflow_task_end(run.history),
            request_id=f"storywink-upgrade-{run.run_id}",
            reset_reapply_type=ResetReapplyType.RESET_REAPPLY_TYPE_SIGNAL,
        )
    )
    if _cancel_requested(run.history):
        await client.get_workflow_handle(run.workflow_id, run_id=response.run_id).cancel()
    return MovedRun(run.workflow_id, run.run_id, response.run_id, run.problem)


async def move_stranded_runs(
    client: Client, workflows: Sequence[type], query: str
) -> list[MovedRun]:
    """Find and move every stranded run; one log line each."""
    moved = []
    async for run in stranded_runs(client, workflows, query):
        done = await move_to_this_code(client, run)
        if done is None:
            continue
        log.warning(
            "run %s of %s was started by an earlier release this code cannot replay (%s): "
            "reset to its first workflow task as run %s; the pages it drew are kept",
            done.old_run_id,
            done.workflow_id,
            done.problem,
            done.new_run_id,
        )
        moved.append(done)
    return moved
