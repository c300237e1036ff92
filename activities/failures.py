"""How an activity's errors reach Temporal: short, typed, retried only when that can help.

A provider's transient error (429, 5xx, a timeout) is retried, after the delay a 429 asked
for; a refusal of the book is not; anything unforeseen is retried with its type and a
short, redacted message. What a provider's final answer (a content refusal, a permanent
error) means is each activity's own: a page is FLAGGED or FAILED, a story FAILED.

A database error is retried when the database may answer differently next time (lost
connection, lock, serialization failure, deadlock) and not when it rejected the data
itself (a value too long, a constraint violated). Either way the failure message is one
short line: SQLAlchemy's own text carries the statement and its parameters, which can be
kilobytes (the Web UI then shows only "Failure exceeds size limit") and hold user data.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from functools import wraps
from typing import ParamSpec, TypeVar

from sqlalchemy import exc as sa
from temporalio.exceptions import ApplicationError

from storywink import contract
from storywink.book.refusals import BookError
from storywink.db.engine import driver_complaint
from storywink.illustration.styles import UnknownStyle
from storywink.providers.base import TransientError
from storywink.redact import Redactor, redact, shorten

# A page that met a fault of the whole fleet (key, model, CDN credentials): retried later,
# never settled for it until its bound (activities.illustrate_page).
FLEET_FAULT = "FleetFault"

P = ParamSpec("P")
T = TypeVar("T")
REASON_LIMIT = 240

# Errors after which the same statement may succeed: the server or the connection was
# away, a lock or a concurrent transaction was in the way (psycopg raises serialization
# failures and deadlocks as OperationalError).
_TRANSIENT = (sa.OperationalError, sa.InterfaceError, sa.TimeoutError, sa.DisconnectionError)


def is_transient_database_error(error: sa.SQLAlchemyError) -> bool:
    if isinstance(error, sa.DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, _TRANSIENT)


def database_reason(error: sa.SQLAlchemyError) -> str:
    """One line naming the driver's complaint, without the statement or its parameters."""
    name, line = driver_complaint(error)
    kind = "unavailable" if is_transient_database_error(error) else "rejected the data"
    return shorten(redact(f"database {kind}: {name}: {line}"), REASON_LIMIT)


def database_failure(error: sa.SQLAlchemyError, stage: str | None = None) -> ApplicationError:
    transient = is_transient_database_error(error)
    reason = database_reason(error)
    return ApplicationError(
        f"{stage}: {reason}" if stage else reason,
        type=contract.DATABASE_UNAVAILABLE if transient else contract.DATABASE_REJECTED,
        non_retryable=not transient,
    )


def refusal(error: BookError | UnknownStyle, stage: str | None = None) -> ApplicationError:
    error_type = error.error_type if isinstance(error, BookError) else contract.UNKNOWN_STYLE
    reason = shorten(str(error), REASON_LIMIT)
    return ApplicationError(
        f"{stage}: {reason}" if stage else reason, type=error_type, non_retryable=True
    )


def stage_failure(
    stage: str, error: Exception, error_type: str, redactor: Redactor
) -> ApplicationError:
    """The failure of an activity's `stage` for an error it does not settle itself (raise
    an `ApplicationError` as it is): `error_type` for the provider's and unforeseen errors."""
    if isinstance(error, TransientError):
        delay = timedelta(seconds=error.retry_after) if error.retry_after else None
        return ApplicationError(
            f"{stage}: {redactor(error.reason)}", type=error_type, next_retry_delay=delay
        )
    if isinstance(error, BookError):  # the page or its book vanished during the run
        return refusal(error, stage)
    if isinstance(error, sa.SQLAlchemyError):
        return database_failure(error, stage)
    return ApplicationError(
        f"{stage}: {type(error).__name__}: {redactor(str(error), limit=300)}", type=error_type
    )


def book_step(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """For a book-level activity: refusals and rejected data end it at once, with a short
    reason; an unavailable database is retried (bounded by the schedule-to-close)."""

    @wraps(fn)
    async def step(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await fn(*args, **kwargs)
        except (BookError, UnknownStyle) as error:
            raise refusal(error) from None
        except sa.SQLAlchemyError as error:
            raise database_failure(error) from None

    return step
