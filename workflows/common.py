"""What both workflows do the same way: read their one input, word an activity's failure.

Deterministic helpers only; the workflows import this module through the sandbox.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, TypeVar

import pydantic
from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, FailureError
from temporalio.exceptions import TimeoutError as ActivityTimeout
from temporalio.types import MethodAsyncSingleParam

from storywink import contract

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
