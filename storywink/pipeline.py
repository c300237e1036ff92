"""The contract of the illustration pipeline: names, ids, timeouts and retry policies.

Operators' scripts and the web backend rely on these names; change them with care.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Final

from temporalio.common import RetryPolicy, SearchAttributeKey

BOOK_ILLUSTRATION_WORKFLOW: Final = "BookIllustration"
PROGRESS_QUERY: Final = "progress"
WORKFLOW_ID_PREFIX: Final = "book-illustration-"

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


def workflow_id_for(book_id: str) -> str:
    """One workflow id per book, so starting twice can only ever find the running one."""
    return f"{WORKFLOW_ID_PREFIX}{book_id}"


def page_public_id(book_id: str, page_number: int) -> str:
    """Deterministic CDN id: a retried upload overwrites instead of duplicating."""
    return f"storywink/{book_id}/generated/page_{page_number}"
