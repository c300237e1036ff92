"""A page's own errors keep the exponential backoff of PAGE_RETRY_INITIAL_SECONDS while its
retry policy starts at PAGE_TIMEOUT_RETRY_SECONDS (a dead worker's page is retried at once)."""

from __future__ import annotations

from datetime import timedelta

from temporalio.exceptions import ApplicationError

from activities.backoff import ErrorBackoff, with_delay
from storywink.config import load_settings


def test_the_backoff_is_temporals_formula_capped_at_the_maximum() -> None:
    backoff = ErrorBackoff(initial_seconds=10, maximum_seconds=300)
    assert [backoff.delay(n).total_seconds() for n in range(1, 8)] == [
        10,
        20,
        40,
        80,
        160,
        300,
        300,
    ]


def test_a_retryable_error_without_a_delay_gets_the_backoff() -> None:
    error = with_delay(ApplicationError("generate: HTTP 503", type="T"), timedelta(seconds=10))
    assert error.next_retry_delay == timedelta(seconds=10)
    assert (error.message, error.type, error.non_retryable) == ("generate: HTTP 503", "T", False)


def test_a_final_error_or_one_with_its_own_delay_is_left_alone() -> None:
    final = ApplicationError("gone", non_retryable=True)
    assert with_delay(final, timedelta(seconds=10)) is final
    own = ApplicationError("429", next_retry_delay=timedelta(seconds=3))
    assert with_delay(own, timedelta(seconds=10)) is own


def test_shipped_defaults_retry_a_dead_workers_page_within_five_seconds() -> None:
    settings = load_settings(database_url="sqlite:///x.db")
    assert settings.page_heartbeat_timeout_seconds + settings.page_timeout_retry_seconds <= 5
    assert settings.page_retry_initial_seconds == 10  # provider errors: as slow as before
