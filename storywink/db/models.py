"""SQLAlchemy 2.0 models: books, pages, notifications (docs/behaviour.md)."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import (
    DeclarativeBase,
    InstrumentedAttribute,
    Mapped,
    mapped_column,
    relationship,
)

from storywink.contract import BookStatus, ModerationStatus, NotificationType


def new_id() -> str:
    return uuid.uuid4().hex


def new_asset_salt() -> str:
    """A book's secret for naming its assets (contract.page_public_id)."""
    return secrets.token_hex(16)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Timestamps:
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


def _enum(enum_type: type[BookStatus | ModerationStatus | NotificationType]) -> Enum:
    # Stored as plain strings with a CHECK constraint: readable and portable.
    return Enum(enum_type, native_enum=False, length=32, validate_strings=True)


class Book(Timestamps, Base):
    __tablename__ = "books"

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(String(64), index=True)
    title: Mapped[str] = mapped_column(String(200))
    child_name: Mapped[str] = mapped_column(String(100))
    status: Mapped[BookStatus] = mapped_column(_enum(BookStatus), default=BookStatus.DRAFT)
    art_style: Mapped[str] = mapped_column(String(64))
    page_length: Mapped[int] = mapped_column(Integer)
    cover_page_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The claim: which workflow and run chain hold the book while it is ILLUSTRATING or
    # GENERATING (the illustration run, or the story run); storywink.book.records. The
    # columns keep their first names: the workers of the previous release share this
    # database while they drain their books (docs/deploying.md), and they read those.
    claim_workflow_id: Mapped[str | None] = mapped_column(
        "illustration_workflow_id", String(200), nullable=True
    )
    claim_run_id: Mapped[str | None] = mapped_column(
        "illustration_run_id", String(64), nullable=True
    )
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    image_count: Mapped[int] = mapped_column(Integer, default=0)
    cost_micro_usd: Mapped[int] = mapped_column(Integer, default=0)
    # Why the last story run failed; cleared when a story is written.
    story_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The secret the names of the book's assets are made with (contract.page_public_id):
    # None for a book created before migration 0008 gave every book one.
    asset_salt: Mapped[str | None] = mapped_column(String(64), nullable=True)

    pages: Mapped[list[Page]] = relationship(
        back_populates="book", order_by="Page.page_number", cascade="all, delete-orphan"
    )


class Page(Timestamps, Base):
    __tablename__ = "pages"
    __table_args__ = (UniqueConstraint("book_id", "page_number", name="uq_pages_book_number"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    book_id: Mapped[str] = mapped_column(ForeignKey("books.id", ondelete="CASCADE"), index=True)
    page_number: Mapped[int] = mapped_column(Integer)
    is_title_page: Mapped[bool] = mapped_column(Boolean, default=False)
    # The photo and the picture are private assets, kept by asset id (storywink.pictures);
    # the `*_image_url` columns hold only the public URLs of images stored before 0008
    # (the previous release's workers read and write those while they drain).
    original_asset_id: Mapped[str | None] = mapped_column(Text, nullable=True)
    original_image_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    text: Mapped[str | None] = mapped_column(Text, nullable=True)
    illustration_notes: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Why the story run left this page without usable text (never silently filled).
    text_problem: Mapped[str | None] = mapped_column(Text, nullable=True)
    generated_asset_id: Mapped[str | None] = mapped_column(Text, nullable=True)
    generated_image_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    moderation_status: Mapped[ModerationStatus] = mapped_column(
        _enum(ModerationStatus), default=ModerationStatus.PENDING
    )
    moderation_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The run whose outcome is recorded here; lets a retried record be a no-op.
    illustrated_by_run_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    model_calls: Mapped[int] = mapped_column(Integer, default=0)
    # The picture's version: 0 for the book's first drawing, one more for each redraw. Each
    # version is stored under its own asset id, so no cache shows an old one as the new.
    image_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The parent's last "what to change" for a redraw of this page (shown to the model).
    change_request: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Why the last redraw left the page as it was (the page keeps its picture).
    redraw_problem: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The redraw ask (`<run chain>/<n>`) whose outcome is recorded here.
    redraw_ask_id: Mapped[str | None] = mapped_column(String(100), nullable=True)

    book: Mapped[Book] = relationship(back_populates="pages")

    @property
    def photo_ref(self) -> str | None:
        """The photo's asset ref (storywink.pictures): its asset id, or a legacy URL."""
        return self.original_asset_id or self.original_image_url

    @property
    def picture_ref(self) -> str | None:
        """The picture's asset ref: its asset id, or a legacy URL."""
        return self.generated_asset_id or self.generated_image_url

    @property
    def has_image(self) -> bool:
        return self.moderation_status is ModerationStatus.OK and bool(self.picture_ref)


class Notification(Base):
    __tablename__ = "notifications"
    # At most one notification per book per illustration run.
    __table_args__ = (UniqueConstraint("book_id", "run_id", name="uq_notifications_book_run"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(String(64), index=True)
    book_id: Mapped[str] = mapped_column(ForeignKey("books.id", ondelete="CASCADE"), index=True)
    run_id: Mapped[str] = mapped_column(String(64))
    type: Mapped[NotificationType] = mapped_column(_enum(NotificationType))
    title: Mapped[str] = mapped_column(String(200))
    message: Mapped[str] = mapped_column(Text)
    read: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class PageDraft(Base):
    """An image the model generated for a page that is not yet stored on the CDN.

    The checkpoint that keeps a retry after an upload or worker failure from paying for
    the image again; deleted once the page's outcome is recorded.
    """

    __tablename__ = "page_drafts"

    page_id: Mapped[str] = mapped_column(
        ForeignKey("pages.id", ondelete="CASCADE"), primary_key=True
    )
    run_id: Mapped[str] = mapped_column(String(64))
    mime_type: Mapped[str] = mapped_column(String(64))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


def column_length(column: InstrumentedAttribute[str] | InstrumentedAttribute[str | None]) -> int:
    """The length a string column holds, so input checks cannot drift from the schema."""
    column_type = column.property.columns[0].type
    assert isinstance(column_type, String) and column_type.length is not None
    return column_type.length


class ModelQuota(Base):
    """One shared limiter of the image model's calls (storywink.quota.slots, quota_store)."""

    __tablename__ = "model_quota"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    rate: Mapped[float | None] = mapped_column(Float)
    overrun: Mapped[float | None] = mapped_column(Float)
    next_free: Mapped[float] = mapped_column(Float, default=0.0)
    hold_until: Mapped[float] = mapped_column(Float, default=0.0)
    epoch: Mapped[int] = mapped_column(Integer, default=0)
    far: Mapped[bool] = mapped_column(Boolean, default=True)
    early_at: Mapped[float] = mapped_column(Float, default=0.0)
    # The worker whose page poll waits on an idle queue, and when it last renewed that
    # (storywink.quota.idle_poll): the other idle workers of its version wait, not poll.
    idle_poller: Mapped[str | None] = mapped_column(String(300))
    idle_poll_renewed: Mapped[float | None] = mapped_column(Float)


class FleetIdentity(Base):
    """The one row naming this database's fleet (storywink.db.fleet): workers compare it with
    their storage's marker and with the fleet a run's pages were prepared by."""

    __tablename__ = "fleet_identity"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    fleet_id: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ModelCall(Base):
    """One call to a paid model (storywink.cost.ledger): written before the call, completed
    after. `outcome` NULL: the call was made or about to be and never completed (a worker
    killed mid-call), so it may have been billed. No foreign key: spend outlives its book."""

    __tablename__ = "model_calls"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # image | story
    model: Mapped[str] = mapped_column(String(100))
    book_id: Mapped[str] = mapped_column(String(64), index=True)
    page_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    user_id: Mapped[str] = mapped_column(String(64), index=True)
    run_id: Mapped[str] = mapped_column(String(64))  # the run chain's claim
    workflow_run_id: Mapped[str] = mapped_column(String(64))
    attempt: Mapped[int] = mapped_column(Integer)
    budget_day: Mapped[str] = mapped_column(String(10))  # the UTC day its user budget holds
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    outcome: Mapped[str | None] = mapped_column(String(32), nullable=True)
    prompt_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    output_text_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    output_image_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    thought_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    total_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    price_read_on: Mapped[str | None] = mapped_column(String(10), nullable=True)
    expected_micro_usd: Mapped[int] = mapped_column(BigInteger)
    # What the budgets hold for the call: the expected cost until it is settled, then its
    # cost (or, if unknown, still the expected cost).
    reserved_micro_usd: Mapped[int] = mapped_column(BigInteger)
    cost_micro_usd: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class CostBudget(Base):
    """What is spent or reserved against one budget: `book:<id>` or `user:<id>:<day>`."""

    __tablename__ = "cost_budgets"

    scope: Mapped[str] = mapped_column(String(100), primary_key=True)
    charged_micro_usd: Mapped[int] = mapped_column(BigInteger, default=0)
