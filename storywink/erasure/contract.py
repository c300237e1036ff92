"""What the `BookErasure` workflow, its activities and its client agree on: names, ids,
timeouts and retries, and the models that cross the workflow boundary (ids and counts
only: never a photo, a URL or a text of the book).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Final

from pydantic import ConfigDict, Field
from temporalio.common import RetryPolicy

from storywink.contract import (
    ILLUSTRATION_WORKFLOW_ID_PREFIX,
    PAGE_REDRAW_WORKFLOW_ID_PREFIX,
    STORY_WORKFLOW_ID_PREFIX,
    Frozen,
    book_asset_folder,
)

BOOK_ERASURE_WORKFLOW: Final = "BookErasure"
ERASURE_WORKFLOW_ID_PREFIX: Final = "book-erasure-"
# The book's own workflow ids of the other run kinds: a run started under one works on the
# book before it has claimed it.
BOOK_RUN_PREFIXES: Final = (
    ILLUSTRATION_WORKFLOW_ID_PREFIX,
    STORY_WORKFLOW_ID_PREFIX,
    PAGE_REDRAW_WORKFLOW_ID_PREFIX,
)

# Stopping the runs on the book: cancelled, waited for, terminated after the grace period.
STOP_RUNS_TIMEOUT: Final = timedelta(minutes=5)
STOP_RUNS_HEARTBEAT: Final = timedelta(seconds=10)
STOP_RUNS_GRACE: Final = timedelta(seconds=60)
# Claiming may find a run that started between the stop and the claim: stop it, claim again.
MAX_CLAIM_ROUNDS: Final = 5
# Deleting the assets: Admin API calls, each limited to 1000 assets, rate limited per hour.
ERASE_ASSETS_TIMEOUT: Final = timedelta(minutes=10)
ERASE_ASSETS_HEARTBEAT: Final = timedelta(seconds=10)
ERASE_ASSETS_SCHEDULE_TO_CLOSE: Final = timedelta(hours=12)  # through an hourly rate limit
ERASURE_STEP_RETRY: Final = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=2),
    maximum_attempts=0,  # bounded by the schedule-to-close
)


def erasure_workflow_id(book_id: str) -> str:
    """One erasure workflow per book: a second request joins the running one."""
    return f"{ERASURE_WORKFLOW_ID_PREFIX}{book_id}"


def book_asset_prefix(book_id: str) -> str:
    """Every asset of a book lives under this folder (originals, every picture version).
    The slash keeps book `ab` from erasing book `abc`'s."""
    return f"{book_asset_folder(book_id)}/"


class ErasureRequest(Frozen):
    """Input of `BookErasure`: `{"book_id": "..."}`. Strict, since people type it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    book_id: str = Field(min_length=1, max_length=64)


class ErasureStep(Frozen):
    """What each erasure activity is given: the book, and who the run is (its chain)."""

    book_id: str
    workflow_id: str
    run_id: str


class RunsStopped(Frozen):
    workflow_ids: tuple[str, ...] = ()  # cancelled (or terminated after the grace period)
    terminated: tuple[str, ...] = ()


class ErasureClaim(Frozen):
    found: bool  # False: no such book (never was, or already erased)
    claimed: bool = False
    user_id: str | None = None
    busy_workflow_id: str | None = None  # a run that claimed the book after the stop


class AssetsErased(Frozen):
    deleted: int


class RowsErased(Frozen):
    books: int = 0
    pages: int = 0
    page_drafts: int = 0
    notifications: int = 0


class ErasureOutcome(Frozen):
    """How an erasure ended: what it stopped and how much it deleted."""

    book_id: str
    found: bool
    stopped_workflow_ids: tuple[str, ...] = ()
    assets_deleted: int = 0
    rows: RowsErased = Field(default_factory=RowsErased)
