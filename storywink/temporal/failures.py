"""How a Temporal failure reads in one line: the message at the bottom of its chain.

For the clients and the operator's report. Free of I/O, so a workflow may import it too
(through `workflow.unsafe.imports_passed_through()`); the workflows' `failure_reason`
reads the activity's own message one level down instead, as the inputs of the commands in
their recorded histories hold it.
"""

from __future__ import annotations

from temporalio.exceptions import FailureError


def innermost_message(error: BaseException | None) -> str | None:
    """The innermost message of a Temporal failure chain (an activity's own error below
    the workflow's "Activity task failed"), or None when no level has one."""
    message = None
    while error is not None:
        if isinstance(error, FailureError) and error.message:
            message = error.message
        error = error.__cause__ if isinstance(error, FailureError) else None
    return message
