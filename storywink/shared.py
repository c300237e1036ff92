"""Types shared by the workflow, the activities and the clients.

Everything that crosses a workflow boundary is one of these pydantic models, so the
history in the Temporal Web UI reads as plain JSON and the CLI can send the same JSON.
Never put image bytes in here: pages carry URLs and ids only.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
)


class BookStatus(StrEnum):
    DRAFT = "DRAFT"
    GENERATING = "GENERATING"
    STORY_READY = "STORY_READY"
    ILLUSTRATING = "ILLUSTRATING"
    COMPLETED = "COMPLETED"
    PARTIAL = "PARTIAL"
    FAILED = "FAILED"


ILLUSTRATABLE_STATUSES = frozenset({BookStatus.STORY_READY, BookStatus.PARTIAL, BookStatus.FAILED})


class ModerationStatus(StrEnum):
    PENDING = "PENDING"
    OK = "OK"
    FLAGGED = "FLAGGED"
    FAILED = "FAILED"


class NotificationType(StrEnum):
    BOOK_COMPLETED = "BOOK_COMPLETED"
    BOOK_PARTIAL = "BOOK_PARTIAL"
    BOOK_FAILED = "BOOK_FAILED"


class _Frozen(BaseModel):
    # Messages between our own workflow and activities ignore fields they do not know: during
    # a rolling deploy a newer worker may send one to an older one.
    model_config = ConfigDict(frozen=True, extra="ignore")


class IllustrationRequest(_Frozen):
    """Input of the `BookIllustration` workflow: `{"book_id": "..."}` from the CLI,
    optionally with a priority: `{"book_id": "...", "priority": 1}`.

    Strict, since people type it: an unknown field is a mistake worth naming."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    book_id: str = Field(min_length=1, max_length=64)
    # Temporal's priority key of the book's pages: 1 (first) to 5 (last); unset: 3.
    priority: int | None = Field(default=None, ge=1, le=5)

    @model_serializer(mode="wrap")
    def _without_unset_priority(self, handler: SerializerFunctionWrapHandler) -> object:
        # `{"book_id": ...}` as before when no priority is given: a worker of the version
        # before it (which forbids unknown fields) still takes the run during a deploy.
        data = handler(self)
        if isinstance(data, dict) and data.get("priority") is None:
            data.pop("priority", None)
        return data


class StyleSnapshot(_Frozen):
    """One style, resolved once per run and handed unchanged to every page."""

    key: str
    label: str
    version: int
    content_hash: str
    description: str
    reference_image_urls: tuple[str, ...]
    title_reference_image_url: str | None = None

    def reference_for(self, is_title_page: bool) -> str:
        if is_title_page and self.title_reference_image_url:
            return self.title_reference_image_url
        return self.reference_image_urls[0]


class PageTask(_Frozen):
    """Everything one page activity needs, so pages never re-read the book."""

    book_id: str
    book_title: str
    page_id: str
    page_number: int
    is_title_page: bool
    original_image_url: str | None
    text: str | None
    illustration_notes: str | None
    style: StyleSnapshot
    run_id: str
    # The claim of a terminated run this run took the book over from: its image for this
    # page may be stored or drafted but not recorded, so the first attempt looks for it.
    earlier_run_id: str | None = None


class PageActivityOptions(_Frozen):
    """Timeouts and retries of the page activity, from the worker's settings.

    Carried in the plan (and so in history) because a workflow may not read settings.
    """

    task_queue: str
    start_to_close_seconds: float
    heartbeat_timeout_seconds: float
    maximum_attempts: int
    initial_interval_seconds: float
    maximum_interval_seconds: float
    backoff_coefficient: float = 2.0


class IllustrationPlan(_Frozen):
    """What `prepare_illustration` decided: the style and the pages still to draw."""

    book_id: str
    user_id: str
    book_title: str
    style: StyleSnapshot
    total_pages: int
    pages: tuple[PageTask, ...]
    page_options: PageActivityOptions


class PrepareInput(_Frozen):
    book_id: str
    workflow_id: str
    run_id: str


class PageResult(_Frozen):
    page_id: str
    page_number: int
    moderation_status: ModerationStatus
    generated_image_url: str | None = None
    moderation_reason: str | None = None


class PageFailure(_Frozen):
    """Recorded by the workflow when a page's activity gave up for good."""

    book_id: str
    page_id: str
    run_id: str
    reason: str


class FinalizeInput(_Frozen):
    book_id: str
    run_id: str  # the claim
    # One notification per settled outcome: the run (not the chain) that settles it.
    settling_run_id: str
    cancelled: bool = False


class BookOutcome(_Frozen):
    book_id: str
    status: BookStatus
    pages_total: int
    pages_with_image: int
    pages_flagged: int
    pages_failed: int
    notification_type: NotificationType
    cancelled: bool = False


class Progress(_Frozen):
    """Answer of the workflow's `progress` query."""

    book_id: str
    phase: str
    total: int = 0
    to_draw: int = 0
    done: int = 0
    flagged: int = 0
    failed: int = 0
    status: BookStatus | None = None
