"""The old path of `storywink.illustration.client`: kept for a web backend that imports it.

New code imports `storywink.illustration.client`.
"""

from storywink.book.refusals import BookNotReady, NotIllustrating, RunEnded
from storywink.contract import SETTLED_STATUSES
from storywink.illustration.client import (
    CONNECTION_LOSS_LIMIT,
    LIVE_POLLER_WINDOW,
    QUERY_TIMEOUT,
    BookState,
    IllustrationClient,
    IllustrationRun,
    QueuePollers,
    RunEnd,
    RunEnding,
    T,
    book_state,
    outcome_from_book,
    progress_from_book,
)
from storywink.temporal.failures import innermost_message as failure_message

__all__ = [
    "CONNECTION_LOSS_LIMIT",
    "LIVE_POLLER_WINDOW",
    "QUERY_TIMEOUT",
    "SETTLED_STATUSES",
    "BookNotReady",
    "BookState",
    "IllustrationClient",
    "IllustrationRun",
    "NotIllustrating",
    "QueuePollers",
    "RunEnd",
    "RunEnded",
    "RunEnding",
    "T",
    "book_state",
    "failure_message",
    "outcome_from_book",
    "progress_from_book",
]
