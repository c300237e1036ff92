"""What the API answers, as typed models (the OpenAPI document is built from them)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from storywink.contract import CHANGE_REQUEST_LIMIT, BookStatus, ModerationStatus


class PageView(BaseModel):
    page_number: int
    is_title_page: bool
    text: str | None
    text_problem: str | None = Field(description="Why the story run left the page without text.")
    outcome: ModerationStatus = Field(description="PENDING until drawn; OK, FLAGGED or FAILED.")
    reason: str | None = Field(description="Why a page is FLAGGED or FAILED.")
    photo_url: str | None = Field(
        description="The parent's photo: a signed URL that expires (`urls_expire_at`), or "
        "this API's route for it (local storage, and in events)."
    )
    image_url: str | None = Field(description="The illustration, once drawn; as `photo_url`.")
    change_request: str | None = Field(
        default=None, description="The parent's note of the page's last redraw."
    )
    redraw_problem: str | None = Field(
        default=None, description="Why the last redraw left the page as it was."
    )


class BookSummary(BaseModel):
    id: str
    title: str
    child_name: str
    art_style: str
    status: BookStatus
    pages_total: int
    created_at: datetime


class BookView(BookSummary):
    story_error: str | None
    cost_usd: float = Field(
        description="What the book's model calls cost so far, at known prices (docs/costs.md)."
    )
    pages: list[PageView]
    urls_expire_at: datetime | None = Field(
        default=None,
        description="When the signed URLs of this answer stop working (IMAGE_URL_TTL_SECONDS "
        "after it): read the book again for new ones. None: no signed URL in it.",
    )


class BookList(BaseModel):
    books: list[BookSummary]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next, older books.")


class PageTextChange(BaseModel):
    text: str = Field(min_length=1, max_length=2000)


class RedrawAsk(BaseModel):
    note: str | None = Field(
        default=None,
        max_length=CHANGE_REQUEST_LIMIT,
        description="What to change, shown to the model (e.g. 'make the dog brown').",
    )


class RunView(BaseModel):
    book_id: str
    workflow_id: str
    run_id: str | None


class CancelView(BaseModel):
    book_id: str
    cancelled: bool


class Health(BaseModel):
    status: str
    database: str | None = None
    temporal: str | None = None
