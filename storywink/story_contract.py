"""The contract of story generation: names, ids, the types that cross the workflow boundary.

Operators start a story from the `temporal` CLI with the same JSON the client sends:
`temporal workflow start --type StoryGeneration --task-queue storywink
--input '{"book_id": "..."}'`.
Never put image bytes in here: pages carry their photo's URL only.
"""

from __future__ import annotations

from typing import Final

from pydantic import BaseModel, ConfigDict, Field

from storywink.shared import BookStatus

STORY_WORKFLOW: Final = "StoryGeneration"
STORY_PROGRESS_QUERY: Final = "progress"
STORY_WORKFLOW_ID_PREFIX: Final = "book-story-"

# Books a story may be (re)written for. GENERATING is ours while a run holds the book.
STORY_WRITABLE_STATUSES: Final = frozenset(
    {BookStatus.DRAFT, BookStatus.FAILED, BookStatus.COMPLETED, BookStatus.PARTIAL}
)

# ApplicationError types of the story activity. A refusal or a request that can never
# succeed (400/401/403, a missing photo) is no error: the activity records the book FAILED.
STORY_UNUSABLE_ANSWER: Final = "StoryUnusableAnswer"  # retried, a bounded number of times
STORY_STAGE_ERROR: Final = "StoryStageError"  # 429, 5xx, timeouts, resets: retried


def story_workflow_id(book_id: str) -> str:
    """One story workflow id per book, so starting twice finds the running run."""
    return f"{STORY_WORKFLOW_ID_PREFIX}{book_id}"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class StoryRequest(_Frozen):
    """Input of the `StoryGeneration` workflow: `{"book_id": "..."}`. Strict: people type it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    book_id: str = Field(min_length=1, max_length=64)


class StoryClaimInput(_Frozen):
    book_id: str
    workflow_id: str
    run_id: str  # the claim: the run's chain, which a reset keeps


class StoryActivityOptions(_Frozen):
    """Timeouts and retries of the story activity, from the worker's settings (carried in
    the plan, so in history, because a workflow may not read settings)."""

    task_queue: str
    start_to_close_seconds: float
    heartbeat_timeout_seconds: float
    maximum_attempts: int
    initial_interval_seconds: float
    maximum_interval_seconds: float
    backoff_coefficient: float = 2.0


class StoryPage(_Frozen):
    page_id: str
    page_number: int
    is_title_page: bool
    original_image_url: str | None


class StoryPlan(_Frozen):
    """What `claim_story` decided: the book as the model will see it."""

    book_id: str
    run_id: str
    title: str
    child_name: str
    style_label: str
    tone: str
    pages: tuple[StoryPage, ...]
    options: StoryActivityOptions


class StoryFailure(_Frozen):
    """Recorded by the workflow when the story activity gave up (or the run was cancelled)."""

    book_id: str
    run_id: str
    reason: str


class StoryOutcome(_Frozen):
    book_id: str
    status: BookStatus  # STORY_READY, or FAILED (with `reason`)
    pages_written: int
    reason: str | None = None
    cancelled: bool = False


class StoryProgress(_Frozen):
    """Answer of the story workflow's `progress` query."""

    book_id: str
    phase: str  # starting, claiming, writing, done, failed, cancelled; settled (from the db)
    status: BookStatus | None = None
    pages: int = 0
    reason: str | None = None
