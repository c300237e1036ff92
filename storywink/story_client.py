"""The old path of `storywink.story.client`: kept for a web backend that imports it.

New code imports `storywink.story.client`.
"""

from storywink.book.refusals import BookError
from storywink.story.client import QUERY_TIMEOUT, StoryClient, StoryRun, StoryRunEnded
from storywink.story.records import StoryNotAllowed

__all__ = [
    "QUERY_TIMEOUT",
    "BookError",
    "StoryClient",
    "StoryNotAllowed",
    "StoryRun",
    "StoryRunEnded",
]
