"""Story generation's metrics, served with the others on the worker's METRICS_PORT.

Call these only inside an activity (they record through `activity.metric_meter()`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from enum import StrEnum
from typing import Final, TypeVar

from temporalio import activity

from storywink.providers.base import ContentRefused, PermanentError, TransientError
from storywink.providers.story import UnusableAnswer

STORY_RUNS: Final = "storywink_story_runs_total"
STORY_DURATION: Final = "storywink_story_duration_seconds"
STORY_MODEL_CALLS: Final = "storywink_story_model_calls_total"
STORY_MODEL_LATENCY: Final = "storywink_story_model_latency_seconds"
STORY_FAILURES: Final = "storywink_story_failures_total"

_SECONDS = (0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
STORY_BUCKETS: Final[dict[str, tuple[float, ...]]] = {
    STORY_DURATION: _SECONDS,
    STORY_MODEL_LATENCY: _SECONDS,
}
T = TypeVar("T")


class StoryFailureReason(StrEnum):
    """Why a story attempt failed; `refused`, `rejected` and a last `unusable` end the run."""

    REFUSED = "refused"  # safety / finish reason
    REJECTED = "rejected"  # 400/401/403, a bad photo
    UNUSABLE = "unusable"  # the answer broke the schema
    TRANSIENT = "transient"  # 429, 5xx, timeout, reset
    GAVE_UP = "gave_up"  # retries (or the run's time) ran out, or the run was cancelled
    ERROR = "error"


def story_settled(status: str, seconds: float | None = None) -> None:
    """A story run reached its book status (STORY_READY or FAILED)."""
    meter = activity.metric_meter()
    labels = {"status": status}
    meter.create_counter(STORY_RUNS, "Story runs settled, by book status.").add(1, labels)
    if seconds is not None:
        meter.create_histogram_float(
            STORY_DURATION, "Duration of a story's settling attempt.", "s"
        ).record(seconds, labels)


def story_failure(reason: StoryFailureReason) -> None:
    activity.metric_meter().create_counter(STORY_FAILURES, "Failed story attempts, by reason.").add(
        1, {"reason": reason.value}
    )


def _outcome_of(error: BaseException | None) -> str:
    if error is None:
        return "ok"
    for kind, name in (
        (ContentRefused, "refused"),
        (UnusableAnswer, "unusable"),
        (TransientError, "transient_error"),
        (PermanentError, "permanent_error"),
    ):
        if isinstance(error, kind):
            return name
    return "error"


async def timed_story_call(call: Awaitable[T]) -> T:
    """Await one text-model call and record it, by outcome."""
    started = time.monotonic()
    error: BaseException | None = None
    try:
        return await call
    except BaseException as exc:
        error = exc
        raise
    finally:
        labels = {"outcome": _outcome_of(error)}
        meter = activity.metric_meter()
        meter.create_counter(STORY_MODEL_CALLS, "Text model calls, by outcome.").add(1, labels)
        meter.create_histogram_float(STORY_MODEL_LATENCY, "Text model call latency.", "s").record(
            time.monotonic() - started, labels
        )
