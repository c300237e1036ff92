"""What both workflows do the same way: read their one input, word an activity's failure.

Deterministic helpers only; the workflows import this module through the sandbox.
"""

from __future__ import annotations

from typing import TypeVar

import pydantic
from temporalio.exceptions import ActivityError, ApplicationError, FailureError
from temporalio.exceptions import TimeoutError as ActivityTimeout

from storywink import contract

Request = TypeVar("Request", bound=pydantic.BaseModel)


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
