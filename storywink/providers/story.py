"""The interface of a story writer, what it is given, and what it answers.

Writers raise the provider errors of `base.py` (`ContentRefused`, `PermanentError`,
`TransientError`) and `UnusableAnswer` when the model's answer breaks the schema.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from pydantic import BaseModel, Field, PrivateAttr

from storywink.providers.base import ProviderError, SourceImage, TokenUsage


class PageStory(BaseModel):
    """One page of the model's answer."""

    page_number: int = Field(description="The page's number, 1-based, as given.")
    text: str = Field(
        description="The page's story text: 1 to 3 short sentences. The title page: the title."
    )
    illustration_notes: str = Field(
        description="A short note for the illustrator: mood, action, what to emphasise."
    )


class StoryAnswer(BaseModel):
    """The response schema the text model must follow."""

    title: str
    pages: list[PageStory]
    # What the call used, when the writer knows; private, so never in the schema.
    _usage: TokenUsage | None = PrivateAttr(default=None)

    @property
    def usage(self) -> TokenUsage | None:
        return self._usage

    def with_usage(self, usage: TokenUsage | None) -> StoryAnswer:
        self._usage = usage
        return self


class UnusableAnswer(ProviderError):
    """The model answered, but not with a story we can use (not JSON, wrong pages, a page
    with no text or too many sentences). Worth asking again, a bounded number of times.

    `page_problems`: page number -> what is wrong with it, for the pages that are."""

    def __init__(self, reason: str, page_problems: dict[int, str] | None = None) -> None:
        super().__init__(reason)
        self.page_problems = dict(page_problems or {})


@dataclass(frozen=True)
class StoryJobPage:
    page_number: int
    is_title_page: bool
    photo: SourceImage | None  # None when the writer does not look at photos


@dataclass(frozen=True)
class StoryJob:
    """What a writer needs for one book."""

    title: str
    child_name: str
    style_label: str
    tone: str
    pages: tuple[StoryJobPage, ...]

    @property
    def page_count(self) -> int:
        return len(self.pages)


class StoryWriter(Protocol):
    """Writes a book's story. Implementations: Gemini text models and the offline writer."""

    name: str
    # Whether `write` needs the pages' photos fetched and passed in.
    uses_photos: bool

    async def write(self, job: StoryJob) -> StoryAnswer: ...
