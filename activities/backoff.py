"""The retry delay of a page's own errors, set by the page itself (`next_retry_delay`).

The page's retry policy starts at `PAGE_TIMEOUT_RETRY_SECONDS` (short), so a page whose
worker died is drawn again as soon as its heartbeat times out; the errors a page raises
(a provider's or the database's, without a delay of their own) keep the exponential
backoff of `PAGE_RETRY_INITIAL_SECONDS` / `PAGE_RETRY_MAX_SECONDS`, as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import activity
from temporalio.exceptions import ApplicationError


@dataclass(frozen=True)
class ErrorBackoff:
    initial_seconds: float
    maximum_seconds: float
    coefficient: float = 2.0

    def delay(self, attempt: int) -> timedelta:
        """Temporal's own formula for the retry after `attempt`: initial x coefficient^(n-1)."""
        seconds = self.initial_seconds * self.coefficient ** max(0, attempt - 1)
        return timedelta(seconds=min(self.maximum_seconds, seconds))

    def after_this_attempt(self) -> timedelta:
        return self.delay(activity.info().attempt)


def with_delay(error: ApplicationError, delay: timedelta | None) -> ApplicationError:
    """`error`, retried after `delay` unless it is final or names its own delay."""
    if delay is None or error.non_retryable or error.next_retry_delay is not None:
        return error
    return ApplicationError(error.message, *error.details, type=error.type, next_retry_delay=delay)
