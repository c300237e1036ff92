"""The contract of the illustration pipeline: what the workflow, the activities and the
clients (CLI, web backend, operators' `temporal` commands) agree on.

Names, workflow ids, search attributes, error types, timeouts and retry policies, and the
pydantic models that cross a workflow boundary. Everything here is in recorded histories or in
somebody's script: change it with care (see tests/histories/README.md).

The models read as plain JSON in the Temporal Web UI, and the CLI can send the same JSON.
Never put image bytes or signed URLs in them: pages carry asset ids (and, from books
stored before private images, public URLs) only.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta
from enum import StrEnum
from typing import Final

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StrictInt,
    model_serializer,
)
from temporalio.common import RetryPolicy, SearchAttributeKey
from temporalio.contrib.pydantic import pydantic_data_converter

# The one data converter of every client, worker, test environment and replayer.
DATA_CONVERTER: Final = pydantic_data_converter

BOOK_ILLUSTRATION_WORKFLOW: Final = "BookIllustration"
PROGRESS_QUERY: Final = "progress"
ILLUSTRATION_WORKFLOW_ID_PREFIX: Final = "book-illustration-"

# Custom search attributes, so an operator finds every run of a book (or of a parent's
# account) whatever its workflow id: `temporal workflow list --query "BookId='…'"`.
# The server must know them: the embedded dev server and the compose stack register them;
# elsewhere `temporal operator search-attribute create --name BookId --type Keyword` (etc.).
BOOK_ID_ATTRIBUTE: Final = SearchAttributeKey.for_keyword("BookId")
USER_ID_ATTRIBUTE: Final = SearchAttributeKey.for_keyword("BookUserId")
OUTCOME_ATTRIBUTE: Final = SearchAttributeKey.for_keyword("BookOutcome")
SEARCH_ATTRIBUTES: Final = (BOOK_ID_ATTRIBUTE, USER_ID_ATTRIBUTE, OUTCOME_ATTRIBUTE)


def dev_server_search_attribute_flags() -> list[str]:
    """`temporal server start-dev` arguments that register our search attributes."""
    return [
        arg
        for key in SEARCH_ATTRIBUTES
        for arg in ("--search-attribute", f"{key.name}={key.indexed_value_type.name.title()}")
    ]


# Error types (ApplicationError.type) a caller can match on. Those the activities raise
# as non-retryable are never retried: the activity decides, the retry policy needn't list them.
BOOK_NOT_FOUND: Final = "BookNotFound"
PAGE_NOT_FOUND: Final = "PageNotFound"
BOOK_NOT_READY: Final = "BookNotReady"
BOOK_BUSY: Final = "BookBusy"
UNKNOWN_STYLE: Final = "UnknownStyle"
BAD_INPUT: Final = "BadInput"
PAGE_STAGE_ERROR: Final = "PageStageError"
DATABASE_UNAVAILABLE: Final = "DatabaseUnavailable"  # retried: connection, lock, deadlock
DATABASE_REJECTED: Final = "DatabaseRejected"  # not retried: the data itself is wrong
WRONG_FLEET: Final = "WrongFleet"  # retried: a worker of another database or storage
BOOK_BEING_ERASED: Final = "BookBeingErased"  # not retried: an erasure run holds the book

# Book-level activities only touch the database: quick, retried through outages...
BOOK_ACTIVITY_TIMEOUT: Final = timedelta(seconds=30)
BOOK_ACTIVITY_RETRY: Final = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=0,  # bounded by the schedule-to-close below
)
# ...for at most an hour: then the run fails with the reason, and `storywink books` lists
# the book as stuck until it is started again.
BOOK_ACTIVITY_SCHEDULE_TO_CLOSE: Final = timedelta(hours=1)


# workflow.patched id: page activities carry a Priority (fairness key = the book's owner,
# priority key from the input). Runs recorded before it schedule pages without one.
PAGE_PRIORITY_PATCH: Final = "page-priority-fairness"


def illustration_workflow_id(book_id: str) -> str:
    """One workflow id per book, so starting twice can only ever find the running one."""
    return f"{ILLUSTRATION_WORKFLOW_ID_PREFIX}{book_id}"


def book_asset_folder(book_id: str) -> str:
    """The one folder that holds every asset of a book (originals, every picture version):
    erasing a book deletes everything under it."""
    return f"storywink/{book_id}"


def page_public_id(
    book_id: str, page_number: int, version: int = 0, salt: str | None = None
) -> str:
    """Deterministic CDN id: a retried upload overwrites instead of duplicating. Each
    version of a page's picture (a redraw) has its own id, so no cache serves the old one.

    With the book's asset salt (`books.asset_salt`, random per book) the name is an HMAC
    of the page and version: one asset id gives away neither the book's other pages nor
    their versions. Books created before the salt (migration 0008) keep the readable name."""
    folder = f"{book_asset_folder(book_id)}/generated"
    if salt is not None:
        return f"{folder}/{_asset_name(salt, 'generated', page_number, version)}"
    suffix = f"_v{version}" if version else ""
    return f"{folder}/page_{page_number}{suffix}"


def original_public_id(book_id: str, page_number: int, salt: str | None = None) -> str:
    """The asset id of a page's photo, named like its pictures (`page_public_id`)."""
    folder = f"{book_asset_folder(book_id)}/originals"
    if salt is not None:
        return f"{folder}/{_asset_name(salt, 'original', page_number, 0)}"
    return f"{folder}/page_{page_number}"


def _asset_name(salt: str, kind: str, page_number: int, version: int) -> str:
    message = f"{kind}/{page_number}/{version}".encode()
    return hmac.new(salt.encode(), message, hashlib.sha256).hexdigest()[:32]


class BookStatus(StrEnum):
    DRAFT = "DRAFT"
    GENERATING = "GENERATING"
    STORY_READY = "STORY_READY"
    ILLUSTRATING = "ILLUSTRATING"
    COMPLETED = "COMPLETED"
    PARTIAL = "PARTIAL"
    FAILED = "FAILED"
    # An erasure run holds the book (storywink.erasure): no other run may claim it, and
    # once the run is done the book is gone. Stored as a plain string: no migration.
    ERASING = "ERASING"


ILLUSTRATABLE_STATUSES = frozenset({BookStatus.STORY_READY, BookStatus.PARTIAL, BookStatus.FAILED})
# A book in one of these has its final status for its last run (and its one notification).
SETTLED_STATUSES: Final = frozenset({BookStatus.COMPLETED, BookStatus.PARTIAL, BookStatus.FAILED})


class ModerationStatus(StrEnum):
    PENDING = "PENDING"
    OK = "OK"
    FLAGGED = "FLAGGED"
    FAILED = "FAILED"


class NotificationType(StrEnum):
    BOOK_COMPLETED = "BOOK_COMPLETED"
    BOOK_PARTIAL = "BOOK_PARTIAL"
    BOOK_FAILED = "BOOK_FAILED"


class Frozen(BaseModel):
    """Immutable, and tolerant of fields it does not know: during a rolling deploy a newer
    worker may send one to an older one."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class IllustrationRequest(Frozen):
    """Input of the `BookIllustration` workflow: `{"book_id": "..."}` from the CLI,
    optionally with a priority: `{"book_id": "...", "priority": 1}`.

    Strict, since people type it: an unknown field is a mistake worth naming."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    book_id: str = Field(min_length=1, max_length=64)
    # Temporal's priority key of the book's pages: 1 (first) to 5 (last); unset: 3.
    priority: StrictInt | None = Field(default=None, ge=1, le=5)  # "1" is a typing mistake

    @model_serializer(mode="wrap")
    def _without_unset_priority(self, handler: SerializerFunctionWrapHandler) -> object:
        # `{"book_id": ...}` as before when no priority is given: a worker of the version
        # before it (which forbids unknown fields) still takes the run during a deploy.
        data = handler(self)
        if isinstance(data, dict) and data.get("priority") is None:
            data.pop("priority", None)
        return data


class StyleSnapshot(Frozen):
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


class RedrawOf(Frozen):
    """What a redraw's page draws: the picture's next version (the page keeps the old one
    until this one is recorded), for which ask, with the parent's note of what to change."""

    version: int
    # The run chain's number for the ask (`<chain>/<n>`): a reset run, which plans its
    # asks again, finds an ask already recorded instead of drawing a version more.
    ask_id: str
    change_request: str | None = None


class PageTask(Frozen):
    """Everything one page activity needs, so pages never re-read the book."""

    book_id: str
    book_title: str
    page_id: str
    page_number: int
    is_title_page: bool
    # The photo: a URL from releases before private images (and for a book stored before
    # them), else None and the photo's asset id below, signed by the activity when it
    # fetches it (a signed URL never goes into history).
    original_image_url: str | None
    text: str | None
    illustration_notes: str | None
    style: StyleSnapshot
    run_id: str
    # The claim of a terminated run this run took the book over from: its image for this
    # page may be stored or drafted but not recorded, so the first attempt looks for it.
    earlier_run_id: str | None = None
    # The fleet (storywink.db.fleet) whose database prepared the run: a page worker of another
    # fleet leaves the page for one of this fleet. None from workers before it existed.
    fleet_id: str | None = None
    original_asset_id: str | None = None
    # The book's asset salt (`page_public_id`); None: a run prepared before it existed,
    # whose pictures keep the readable name its earlier attempts may have stored under.
    asset_salt: str | None = None
    # A redraw (PageRedraw) of a page that was drawn before; None: its first drawing.
    redraw: RedrawOf | None = None


class ActivityOptions(Frozen):
    """Timeouts and retries of a page or story activity, from the worker's settings.

    Carried in the plan (and so in history) because a workflow may not read settings.
    """

    task_queue: str
    start_to_close_seconds: float
    heartbeat_timeout_seconds: float
    maximum_attempts: int
    initial_interval_seconds: float
    maximum_interval_seconds: float
    backoff_coefficient: float = 2.0

    @property
    def start_to_close(self) -> timedelta:
        return timedelta(seconds=self.start_to_close_seconds)

    @property
    def heartbeat_timeout(self) -> timedelta:
        return timedelta(seconds=self.heartbeat_timeout_seconds)

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            initial_interval=timedelta(seconds=self.initial_interval_seconds),
            backoff_coefficient=self.backoff_coefficient,
            maximum_interval=timedelta(seconds=self.maximum_interval_seconds),
            maximum_attempts=self.maximum_attempts,
        )


class IllustrationPlan(Frozen):
    """What `prepare_illustration` decided: the style and the pages still to draw."""

    book_id: str
    user_id: str
    book_title: str
    style: StyleSnapshot
    total_pages: int
    pages: tuple[PageTask, ...]
    page_options: ActivityOptions


class PrepareInput(Frozen):
    book_id: str
    workflow_id: str
    run_id: str


class PageResult(Frozen):
    page_id: str
    page_number: int
    moderation_status: ModerationStatus
    # A picture stored before private images: its public URL (releases before them).
    generated_image_url: str | None = None
    moderation_reason: str | None = None
    generated_asset_id: str | None = None  # a private picture's asset id


class PageFailure(Frozen):
    """Recorded by the workflow when a page's activity gave up for good."""

    book_id: str
    page_id: str
    run_id: str
    reason: str
    redraw: RedrawOf | None = None  # the page task's, when a redraw gave up


class FinalizeInput(Frozen):
    book_id: str
    run_id: str  # the claim
    # One notification per settled outcome: the run (not the chain) that settles it.
    settling_run_id: str
    cancelled: bool = False


class BookOutcome(Frozen):
    book_id: str
    status: BookStatus
    pages_total: int
    pages_with_image: int
    pages_flagged: int
    pages_failed: int
    notification_type: NotificationType
    cancelled: bool = False
    # What the book's model calls have cost when it settled, from the ledger (the run's
    # result in the Web UI shows it); None from releases before the ledger.
    cost_usd: float | None = None


class Progress(Frozen):
    """Answer of the workflow's `progress` query."""

    book_id: str
    phase: str
    total: int = 0
    to_draw: int = 0
    done: int = 0
    flagged: int = 0
    failed: int = 0
    status: BookStatus | None = None


# Story generation: `StoryGeneration` writes a DRAFT book's text, page by page.
# Operators start it with the same JSON the client sends:
# `temporal workflow start --type StoryGeneration --task-queue storywink
#  --workflow-id book-story-ID --input '{"book_id": "ID"}'`

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


class StoryRequest(Frozen):
    """Input of the `StoryGeneration` workflow: `{"book_id": "..."}`. Strict: people type it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    book_id: str = Field(min_length=1, max_length=64)


class StoryClaimInput(Frozen):
    book_id: str
    workflow_id: str
    run_id: str  # the claim: the run's chain, which a reset keeps


class StoryPage(Frozen):
    page_id: str
    page_number: int
    is_title_page: bool
    original_image_url: str | None  # as in PageTask: None when the asset id is set
    original_asset_id: str | None = None


class StoryPlan(Frozen):
    """What `claim_story` decided: the book as the model will see it."""

    book_id: str
    run_id: str
    title: str
    child_name: str
    style_label: str
    tone: str
    pages: tuple[StoryPage, ...]
    options: ActivityOptions


class StoryFailure(Frozen):
    """Recorded by the workflow when the story activity gave up (or the run was cancelled)."""

    book_id: str
    run_id: str
    reason: str


class StoryOutcome(Frozen):
    book_id: str
    status: BookStatus  # STORY_READY, or FAILED (with `reason`)
    pages_written: int
    reason: str | None = None
    cancelled: bool = False


class StoryProgress(Frozen):
    """Answer of the story workflow's `progress` query."""

    book_id: str
    phase: str  # starting, claiming, writing, done, failed, cancelled; settled (from the db)
    status: BookStatus | None = None
    pages: int = 0
    reason: str | None = None


# A parent's redraw: `PageRedraw` draws pages of a COMPLETED or PARTIAL book again, one run
# per book at a time. Every ask for the book while its run works joins that run (the signal
# below): operators start it with the same JSON the client sends,
# `temporal workflow start --type PageRedraw --task-queue storywink
#  --workflow-id page-redraw-ID --input '{"book_id": "ID", "page_number": 3, "note": "..."}'`

PAGE_REDRAW_WORKFLOW: Final = "PageRedraw"
PAGE_REDRAW_WORKFLOW_ID_PREFIX: Final = "page-redraw-"
REDRAW_SIGNAL: Final = "redraw"
REDRAW_PROGRESS_QUERY: Final = "progress"
REDRAWABLE_STATUSES: Final = frozenset({BookStatus.COMPLETED, BookStatus.PARTIAL})
CHANGE_REQUEST_LIMIT: Final = 500  # characters of a parent's note


def page_redraw_workflow_id(book_id: str) -> str:
    """One redraw workflow id per book: two asks while it runs land on the same run."""
    return f"{PAGE_REDRAW_WORKFLOW_ID_PREFIX}{book_id}"


class RedrawAsk(Frozen):
    """One page to draw again, with what to change: the signal's argument."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    page_number: StrictInt = Field(ge=1)
    note: str | None = Field(default=None, max_length=CHANGE_REQUEST_LIMIT)


class RedrawRequest(Frozen):
    """Input of `PageRedraw`: `{"book_id": "..."}`, with the first page to draw when started
    by hand: `{"book_id": "...", "page_number": 3, "note": "make the dog brown"}`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    book_id: str = Field(min_length=1, max_length=64)
    page_number: StrictInt | None = Field(default=None, ge=1)
    note: str | None = Field(default=None, max_length=CHANGE_REQUEST_LIMIT)

    def ask(self) -> RedrawAsk | None:
        if self.page_number is None:
            return None
        return RedrawAsk(page_number=self.page_number, note=self.note)


class NumberedAsk(Frozen):
    """An ask as the redraw run took it in: numbered in its chain, in the order it came."""

    ask_id: str
    page_number: int
    note: str | None = None


class RedrawClaimInput(Frozen):
    book_id: str
    workflow_id: str
    run_id: str  # the claim: the run's chain
    asks: tuple[NumberedAsk, ...]


class RedrawPlan(Frozen):
    """What `claim_redraw` decided: the pages to draw, and the asks it refused."""

    book_id: str
    user_id: str
    pages: tuple[PageTask, ...]
    page_options: ActivityOptions
    refused: tuple[str, ...] = ()  # e.g. "book B has no page 9 (it has 5)"
    # Asks this chain has recorded already (a reset run plans them again): as they stand.
    recorded: tuple[PageResult, ...] = ()


class RedrawOutcome(Frozen):
    """The result of a `PageRedraw` run: the book as its last redraw settled it."""

    book: BookOutcome
    redrawn: tuple[PageResult, ...]
    refused: tuple[str, ...] = ()


class RedrawProgress(Frozen):
    """Answer of the redraw workflow's `progress` query."""

    book_id: str
    phase: str  # starting, drawing, finalizing, done, cancelled
    drawing: tuple[int, ...] = ()  # page numbers being drawn
    redrawn: tuple[int, ...] = ()
