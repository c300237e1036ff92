"""The old path of `storywink.illustration.client`: kept for a web backend that imports it.

New code imports `storywink.illustration.client`.
"""

from storywink.book.refusals import BookNotReady, NotIllustrating, RunEnded
from storywink.illustration.client import (
    CONNECTION_LOSS_LIMIT,
    LIVE_POLLER_WINDOW,
    QUERY_TIMEOUT,
    SETTLED_STATUSES,
    BookState,
    IllustrationClient,
    IllustrationRun,
    QueuePollers,
    RunEnd,
    RunEnding,
    T,
    book_state,
    failure_message,
    outcome_from_book,
    progress_from_book,
)

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
