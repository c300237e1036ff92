"""Storywink's own metrics, served beside the Temporal SDK's on the worker's METRICS_PORT.

Call these only inside an activity: they record through `activity.metric_meter()`, which
labels with namespace, task_queue and activity_type; the worker's runtime adds
worker_identity (`storywink.telemetry`). Without METRICS_PORT the meter is a no-op.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from enum import StrEnum
from typing import TypeVar

from temporalio import activity

from storywink.contract import ModerationStatus
from storywink.providers.base import ContentRefused, PermanentError, TransientError
from storywink.story.metrics import STORY_BUCKETS

PAGES = "storywink_pages_total"
PAGE_DURATION = "storywink_page_duration_seconds"
PAGE_RETRIES = "storywink_page_retries_total"
MODEL_CALLS = "storywink_model_calls_total"
MODEL_LATENCY = "storywink_model_latency_seconds"

T = TypeVar("T")

# The SDK's default buckets are milliseconds; ours are seconds, up to a page's timeout.
_SECONDS = (0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
BUCKETS: dict[str, tuple[float, ...]] = {
    PAGE_DURATION: _SECONDS,
    MODEL_LATENCY: _SECONDS,
    **STORY_BUCKETS,
}


class ModelOutcome(StrEnum):
    OK = "ok"
    REFUSED = "refused"
    TRANSIENT_ERROR = "transient_error"
    PERMANENT_ERROR = "permanent_error"
    ERROR = "error"


def page_settled(outcome: ModerationStatus, seconds: float | None = None) -> None:
    """A page reached its outcome (OK, FLAGGED or FAILED); `seconds` of the final attempt."""
    meter = activity.metric_meter()
    labels = {"outcome": outcome.value}
    meter.create_counter(PAGES, "Pages settled, by outcome.").add(1, labels)
    if seconds is not None:
        meter.create_histogram_float(
            PAGE_DURATION, "Duration of a page's settling attempt.", "s"
        ).record(seconds, labels)


def page_retry() -> None:
    """A page attempt after the first one started."""
    activity.metric_meter().create_counter(PAGE_RETRIES, "Page attempts after the first.").add(1)


def model_call(seconds: float, outcome: ModelOutcome) -> None:
    """One call to the image model ended after `seconds`."""
    meter = activity.metric_meter()
    labels = {"outcome": outcome.value}
    meter.create_counter(MODEL_CALLS, "Image model calls, by outcome.").add(1, labels)
    meter.create_histogram_float(MODEL_LATENCY, "Image model call latency.", "s").record(
        seconds, labels
    )


async def timed_model_call(call: Awaitable[T]) -> T:
    """Await one image model call and record it, its outcome read from the provider error.

    Wrap the provider's call itself, inside any error translation: it must see
    `ContentRefused`, `TransientError` and `PermanentError` as the provider raised them.
    """
    started = time.monotonic()
    outcome = ModelOutcome.ERROR
    try:
        result = await call
        outcome = ModelOutcome.OK
        return result
    except ContentRefused:
        outcome = ModelOutcome.REFUSED
        raise
    except TransientError:
        outcome = ModelOutcome.TRANSIENT_ERROR
        raise
    except PermanentError:
        outcome = ModelOutcome.PERMANENT_ERROR
        raise
    finally:
        model_call(time.monotonic() - started, outcome)
