"""What the workflows do the same way: read their one input, run a book step, draw a page
and record it when it gives up, word an activity's failure.

Deterministic helpers only; the workflows import this module through the sandbox.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

import pydantic
from temporalio import workflow
from temporalio.common import Priority
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    FailureError,
    is_cancelled_exception,
)
from temporalio.exceptions import TimeoutError as ActivityTimeout
from temporalio.types import MethodAsyncSingleParam

with workflow.unsafe.imports_passed_through():
    from activities.finalize import FinalizeActivities
    from activities.illustrate_page import IllustratePageActivities
    from storywink import contract
    from storywink.contract import (
        ActivityOptions,
        ModerationStatus,
        PageFailure,
        PageResult,
        PageTask,
    )

Request = TypeVar("Request", bound=pydantic.BaseModel)
StepInput = TypeVar("StepInput")
StepResult = TypeVar("StepResult")


def book_step(
    step: MethodAsyncSingleParam[Any, StepInput, StepResult],
    arg: StepInput,
    *,
    cancellation_type: workflow.ActivityCancellationType = (
        workflow.ActivityCancellationType.TRY_CANCEL
    ),
) -> Awaitable[StepResult]:
    """A book step (claim, prepare, record a failure, settle) on the workflow's own queue,
    with the book steps' timeouts and retries."""
    return workflow.execute_activity_method(
        step,
        arg,
        start_to_close_timeout=contract.BOOK_ACTIVITY_TIMEOUT,
        schedule_to_close_timeout=contract.BOOK_ACTIVITY_SCHEDULE_TO_CLOSE,
        retry_policy=contract.BOOK_ACTIVITY_RETRY,
        cancellation_type=cancellation_type,
    )


def request_from(model: type[Request], workflow_name: str, inputs: tuple[object, ...]) -> Request:
    """The one input, `{"book_id": "..."}`; anything else fails the run at once with a
    message naming the problem, instead of retrying its first workflow task forever."""
    if len(inputs) != 1:
        raise _bad_input(workflow_name, f"it was given {len(inputs)}")
    try:
        return model.model_validate(inputs[0])
    except pydantic.ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'input'}: {e['msg']}" for e in error.errors()
        )
        raise _bad_input(workflow_name, problems) from None


def _bad_input(workflow_name: str, problem: str) -> ApplicationError:
    return ApplicationError(
        f'{workflow_name} takes one input, {{"book_id": "..."}}; {problem}',
        type=contract.BAD_INPUT,
        non_retryable=True,
    )


def failure_reason(error: ActivityError, what: str = "page") -> str:
    """An activity's own message is already prefixed with the stage that failed."""
    cause = error.cause
    if isinstance(cause, ActivityTimeout):
        which = cause.type.name.replace("_", "-").lower() if cause.type else "activity"
        return f"timeout: no answer within the {what}'s {which} timeout"
    if isinstance(cause, FailureError) and cause.message:
        return cause.message  # str() would put the error type in front of it
    return str(cause or error)


async def draw_page(page: PageTask, options: ActivityOptions, priority: Priority) -> PageResult:
    """Draw one page on the page workers; when its activity gives up for good, record the
    page FAILED with the reason. Raises `asyncio.CancelledError` when the run is cancelled
    (once the page has stopped and recorded where)."""
    try:
        return await workflow.execute_activity_method(
            IllustratePageActivities.illustrate_page,
            page,
            task_queue=options.task_queue,
            start_to_close_timeout=options.start_to_close,
            heartbeat_timeout=options.heartbeat_timeout,
            retry_policy=options.retry_policy(),
            cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            summary=f"page {page.page_number}",
            priority=priority,
        )
    except ActivityError as error:
        if is_cancelled_exception(error):
            raise asyncio.CancelledError() from None
        return await _record_failure(page, failure_reason(error))


async def _record_failure(page: PageTask, reason: str) -> PageResult:
    """Record a page that gave up; if even that fails for good (the page was deleted),
    count it failed and let finalize settle the book."""
    try:
        return await book_step(
            FinalizeActivities.record_page_failure,
            PageFailure(
                book_id=page.book_id,
                page_id=page.page_id,
                run_id=page.run_id,
                reason=reason,
                redraw=page.redraw,
            ),
        )
    except ActivityError as error:
        if is_cancelled_exception(error):
            raise asyncio.CancelledError() from None
        workflow.logger.warning(
            "page %d: its failure could not be recorded: %s",
            page.page_number,
            failure_reason(error),
        )
        return PageResult(
            page_id=page.page_id,
            page_number=page.page_number,
            moderation_status=ModerationStatus.FAILED,
            moderation_reason=reason,
        )
