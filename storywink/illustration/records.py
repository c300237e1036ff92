"""Every database read and write of an illustration run, each idempotent.

Activities may run twice; each function here leaves the same state when repeated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Final, Protocol

from sqlalchemy import bindparam, delete, exists, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from storywink.book.records import RunKind, get_book, holds, release
from storywink.book.refusals import BookBusy, BookNotReady, PageNotFound
from storywink.contract import (
    BOOK_ILLUSTRATION_WORKFLOW,
    ILLUSTRATABLE_STATUSES,
    ILLUSTRATION_WORKFLOW_ID_PREFIX,
    BookOutcome,
    BookStatus,
    ModerationStatus,
    NotificationType,
    PageResult,
    RedrawOf,
)
from storywink.cost.records import count_image_calls
from storywink.db.models import (
    Book,
    Notification,
    Page,
    PageDraft,
    column_length,
    new_asset_salt,
)
from storywink.db.statements import execute
from storywink.illustration.styles import STYLES, UnknownStyle
from storywink.pictures import RefColumns, ref_columns
from storywink.redact import shorten

NOT_STARTED = "before this page was started"
_REDRAW_ALL_FROM = frozenset({BookStatus.STORY_READY})


def check_style(book: Book) -> None:
    """An unknown style refuses the run before it claims the book."""
    if book.art_style not in STYLES:
        raise UnknownStyle(book.art_style)


def _reset_pages_to_draw(book: Book, claimed_from: BookStatus) -> None:
    redraw_all = claimed_from in _REDRAW_ALL_FROM
    for page in book.pages:
        if redraw_all or needs_drawing(page):
            page.moderation_status = ModerationStatus.PENDING
            page.moderation_reason = None
            page.generated_asset_id = None
            page.generated_image_url = None
            page.illustrated_by_run_id = None


# An illustration run claims the book through storywink.book.records.claim: the pages it
# will draw are reset (smart retry keeps pictures and refusals).
ILLUSTRATION_RUN = RunKind(
    holding=BookStatus.ILLUSTRATING,
    start_from=ILLUSTRATABLE_STATUSES,
    workflow_type=BOOK_ILLUSTRATION_WORKFLOW,
    workflow_id_prefix=ILLUSTRATION_WORKFLOW_ID_PREFIX,
    not_ready=BookNotReady,
    busy=BookBusy,
    check_book=check_style,
    reset_book=_reset_pages_to_draw,
)


def needs_drawing(page: Page) -> bool:
    """Smart retry: only pages without an image that were not refused by the model."""
    return not page.has_image and page.moderation_status is not ModerationStatus.FLAGGED


def pages_to_draw(book: Book) -> list[Page]:
    return [page for page in book.pages if needs_drawing(page)]


def settled_result(
    session: Session, page_id: str, run_id: str, redraw: RedrawOf | None = None
) -> PageResult | None:
    """The page as it stands when this run has nothing to draw for it: its outcome is
    recorded (by this run, or kept from an earlier one), or the run no longer holds the
    book (a late attempt after a reset, a takeover or the end of the run). None: draw it
    (or draw `redraw`'s version of it)."""
    page = _page_state(session, page_id)
    holds_claim = page.claim_run_id == run_id
    to_draw = (
        page.moderation_status is ModerationStatus.PENDING
        if redraw is None
        else not redraw_recorded(page, redraw.version)
    )
    if holds_claim and to_draw:
        return None
    return page_result(page)


def redraw_recorded(page: PageOutcome, version: int) -> bool:
    """Whether the outcome of drawing `version` of the page (a redraw) is recorded."""
    return page.image_version >= version


def cancelled_reason(stage: str) -> str:
    return f"cancelled: the illustration run was cancelled {stage}"


class PageOutcome(Protocol):
    """A page's outcome columns: a `Page`, or the `PageState` the page path reads."""

    @property
    def id(self) -> str: ...
    @property
    def page_number(self) -> int: ...
    @property
    def moderation_status(self) -> ModerationStatus: ...
    @property
    def moderation_reason(self) -> str | None: ...
    @property
    def generated_asset_id(self) -> str | None: ...
    @property
    def generated_image_url(self) -> str | None: ...
    @property
    def image_version(self) -> int: ...


def page_result(page: PageOutcome) -> PageResult:
    return PageResult(
        page_id=page.id,
        page_number=page.page_number,
        moderation_status=page.moderation_status,
        generated_image_url=page.generated_image_url,
        moderation_reason=page.moderation_reason,
        generated_asset_id=page.generated_asset_id,
    )


def count_model_call(session: Session, page_id: str) -> None:
    session.execute(update(Page).where(Page.id == page_id).values(model_calls=Page.model_calls + 1))
    session.execute(
        update(Book)
        .where(Book.id == select(Page.book_id).where(Page.id == page_id).scalar_subquery())
        .values(image_count=Book.image_count + 1)
    )
    session.commit()


def record_page(
    session: Session,
    page_id: str,
    run_id: str,
    status: ModerationStatus,
    *,
    image_ref: str | None = None,
    reason: str | None = None,
    uncounted_calls: int = 0,
    redraw: RedrawOf | None = None,
) -> PageResult:
    """Record a page's outcome for this run, with the model calls its attempts made that
    `count_model_call` could not count (the database was away); a repeat, or a run
    without the claim, changes nothing and gets the page as it stands.

    A redraw (`redraw` given) replaces the picture only with a new one: a
    refusal or failure keeps a drawn page's picture, saying why in `redraw_problem`, and
    settles a page that had none as its first drawing would."""
    page = _page_state(session, page_id)
    if redraw is None:
        already_recorded = page.illustrated_by_run_id == run_id and (
            page.moderation_status is not ModerationStatus.PENDING
        )
    else:
        already_recorded = redraw_recorded(page, redraw.version)
    # A late activity of a run that no longer holds the book must not overwrite its pages.
    if already_recorded or page.claim_run_id != run_id:
        session.rollback()
        return page_result(page)
    picture = ref_columns(image_ref)  # an asset id; a legacy URL only from an older attempt
    if redraw is None:
        recorded = replace(
            page,
            moderation_status=status,
            generated_asset_id=picture.asset_id,
            generated_image_url=picture.legacy_url,
            moderation_reason=reason,
        )
    else:
        recorded = replace(
            _redrawn(page, status, picture, reason),
            image_version=redraw.version,
            change_request=redraw.change_request,
            redraw_ask_id=redraw.ask_id,
        )
    recorded = replace(recorded, illustrated_by_run_id=run_id)
    if changes := recorded.changes_from(page):
        execute(session, _RECORD_PAGE, page_key=page_id, **changes)
    if uncounted_calls:  # in SQL: other pages of the book count at the same time
        count_image_calls(session, page_id, page.book_id, uncounted_calls)
    execute(session, _DROP_DRAFT, page_key=page_id)
    session.commit()
    return page_result(recorded)


def _redrawn(
    page: PageState, status: ModerationStatus, picture: RefColumns, reason: str | None
) -> PageState:
    if status is ModerationStatus.OK:
        return replace(
            page,
            generated_asset_id=picture.asset_id,
            generated_image_url=picture.legacy_url,
            moderation_status=ModerationStatus.OK,
            moderation_reason=None,
            redraw_problem=None,
        )
    if page.has_image:
        return replace(page, redraw_problem=reason)
    return replace(page, redraw_problem=reason, moderation_status=status, moderation_reason=reason)


def save_draft(session: Session, page_id: str, run_id: str, data: bytes, mime_type: str) -> None:
    """Keep a generated image until it is stored, so a retry need not generate it again."""
    execute(session, _DROP_DRAFT, page_key=page_id)
    execute(session, _KEEP_DRAFT, page_id=page_id, run_id=run_id, data=data, mime_type=mime_type)
    session.commit()


@dataclass(frozen=True)
class PageState:
    """What the page's path reads of a page and its book's claim, in one statement."""

    id: str
    page_number: int
    book_id: str
    claim_run_id: str | None
    moderation_status: ModerationStatus
    moderation_reason: str | None
    generated_asset_id: str | None
    generated_image_url: str | None
    illustrated_by_run_id: str | None
    image_version: int
    change_request: str | None
    redraw_problem: str | None
    redraw_ask_id: str | None

    @property
    def has_image(self) -> bool:
        picture = self.generated_asset_id or self.generated_image_url
        return self.moderation_status is ModerationStatus.OK and bool(picture)

    def changes_from(self, before: PageState) -> dict[str, object]:
        """The outcome columns that differ from `before`'s, as the ORM would write them
        (the others are left to whoever else writes them)."""
        return {
            name: getattr(self, name)
            for name in _OUTCOME_COLUMNS
            if getattr(self, name) != getattr(before, name)
        }


_OUTCOME_COLUMNS: Final = (
    "moderation_status",
    "moderation_reason",
    "generated_asset_id",
    "generated_image_url",
    "illustrated_by_run_id",
    "image_version",
    "change_request",
    "redraw_problem",
    "redraw_ask_id",
)


def _page_state(session: Session, page_id: str) -> PageState:
    row = execute(session, _PAGE_STATE, page_key=page_id).one_or_none()
    if row is None:
        raise PageNotFound(page_id)
    return PageState(**row._mapping)


# The page path's statements (storywink.db.statements: built once, run on the session's
# connection).
_PAGE_STATE = (
    select(
        Page.id,
        Page.page_number,
        Page.book_id,
        Book.claim_run_id.label("claim_run_id"),
        *(getattr(Page, name) for name in _OUTCOME_COLUMNS),
    )
    .join(Book, Book.id == Page.book_id)
    .where(Page.id == bindparam("page_key"))
)
_RECORD_PAGE = update(Page).where(Page.id == bindparam("page_key"))
_DROP_DRAFT = delete(PageDraft).where(PageDraft.page_id == bindparam("page_key"))
_KEEP_DRAFT = insert(PageDraft)


def load_draft(session: Session, page_id: str, run_ids: Sequence[str]) -> tuple[bytes, str] | None:
    """(bytes, mime type) of the image one of these runs generated for the page and has
    not stored."""
    draft = session.get(PageDraft, page_id)
    if draft is None or draft.run_id not in run_ids:
        return None
    return draft.data, draft.mime_type


def book_status_for(pages: Sequence[Page]) -> BookStatus:
    """The finalize rule (docs/behaviour.md, "Settling a book")."""
    if pages and all(page.has_image for page in pages):
        return BookStatus.COMPLETED
    if any(page.has_image or (page.text or "").strip() for page in pages):
        return BookStatus.PARTIAL
    return BookStatus.FAILED


_NOTIFICATION_FOR = {
    BookStatus.COMPLETED: NotificationType.BOOK_COMPLETED,
    BookStatus.PARTIAL: NotificationType.BOOK_PARTIAL,
    BookStatus.FAILED: NotificationType.BOOK_FAILED,
}


_TITLE_LIMIT = column_length(Notification.title)


def _notification_text(book: Book, outcome: BookOutcome) -> tuple[str, str]:
    """Title and message; the title fits its column whatever the book's title."""
    total, drawn = outcome.pages_total, outcome.pages_with_image
    if outcome.status is BookStatus.COMPLETED:
        title, message = "{} is ready", f"All {total} pages are illustrated."
    elif outcome.cancelled:
        title = "Illustration of {} was stopped"
        message = (
            f"The illustration was stopped before it finished: {drawn} of {total} pages are "
            "illustrated. Start it again to draw the rest."
        )
    elif outcome.status is BookStatus.PARTIAL:
        title = "{} is partly illustrated"
        message = (
            f"{drawn} of {total} pages are illustrated; {outcome.pages_flagged} were declined "
            f"by the image model and {outcome.pages_failed} failed.{_budget_note(book)} You "
            "can retry the missing pages."
        )
    else:
        title, message = "{} could not be illustrated", "No page could be illustrated. Try again."
    room = _TITLE_LIMIT - len(title.format(""))
    return title.format(shorten(book.title, room)), message


BUDGET_REASON = "generate: budget:"


def _budget_note(book: Book) -> str:
    """Why pages failed when a budget stopped them (storywink.cost.budgets)."""
    stopped = [p for p in book.pages if (p.moderation_reason or "").startswith(BUDGET_REASON)]
    if not stopped:
        return ""
    which = (
        "daily budget"
        if "USER_DAILY_BUDGET_USD" in (stopped[0].moderation_reason or "")
        else ("book's budget")
    )
    return f" {len(stopped)} were not drawn: the {which} for image generation was reached."


def _stop_pending_pages(book: Book, run_id: str) -> None:
    """A cancelled run's pages that no attempt recorded were never started."""
    for page in book.pages:
        if page.moderation_status is ModerationStatus.PENDING:
            page.moderation_status = ModerationStatus.FAILED
            page.moderation_reason = cancelled_reason(NOT_STARTED)
            page.illustrated_by_run_id = run_id


UNACCOUNTED = (
    "finalize: the run has no outcome recorded for this page (was it drawn by a worker "
    "on another DATABASE_URL?)"
)


def _fail_unaccounted_pages(book: Book, run_id: str) -> None:
    """Every page the run drew has its outcome recorded before finalize; one still PENDING
    was lost on the way (its outcome recorded in another database, or not at all): a
    settled book never holds a PENDING page, and its counts add up."""
    for page in book.pages:
        if page.moderation_status is ModerationStatus.PENDING:
            page.moderation_status = ModerationStatus.FAILED
            page.moderation_reason = UNACCOUNTED
            page.illustrated_by_run_id = run_id


def outcome_of(book: Book, status: BookStatus, *, cancelled: bool = False) -> BookOutcome:
    """The book's pages counted, with `status` and the notification it calls for."""
    return BookOutcome(
        book_id=book.id,
        status=status,
        pages_total=len(book.pages),
        pages_with_image=sum(page.has_image for page in book.pages),
        pages_flagged=sum(p.moderation_status is ModerationStatus.FLAGGED for p in book.pages),
        pages_failed=sum(p.moderation_status is ModerationStatus.FAILED for p in book.pages),
        notification_type=_NOTIFICATION_FOR.get(status, NotificationType.BOOK_FAILED),
        cancelled=cancelled,
        cost_usd=book.cost_micro_usd / 1_000_000,
    )


def settle_book(
    session: Session, book_id: str, run_id: str, *, settling_run_id: str, cancelled: bool
) -> BookOutcome:
    """Settle the book held by `run_id`: status by the finalize rule, and one
    notification per settled outcome (keyed by the run that settles it)."""
    book = get_book(session, book_id)
    holds_claim = holds(book, ILLUSTRATION_RUN, run_id)
    if holds_claim and cancelled:
        _stop_pending_pages(book, run_id)
    elif holds_claim:
        _fail_unaccounted_pages(book, run_id)
    status = book_status_for(book.pages) if holds_claim else book.status
    outcome = outcome_of(book, status, cancelled=cancelled)
    if not holds_claim:
        # A repeat of this finalize (or a run whose claim was taken over): change nothing.
        session.rollback()
        return outcome
    # Drafts left by pages that failed after generating are of no further use.
    page_ids = select(Page.id).where(Page.book_id == book_id)
    session.execute(delete(PageDraft).where(PageDraft.page_id.in_(page_ids)))
    release(book, status)
    already_notified = session.scalar(
        select(
            exists().where(Notification.book_id == book_id, Notification.run_id == settling_run_id)
        )
    )
    if not already_notified:
        title, message = _notification_text(book, outcome)
        session.add(
            Notification(
                user_id=book.user_id,
                book_id=book_id,
                run_id=settling_run_id,
                type=outcome.notification_type,
                title=title,
                message=message,
            )
        )
    try:
        session.commit()
    except IntegrityError:  # a concurrent duplicate finalize won the race; it did the same
        session.rollback()
    return outcome


@dataclass(frozen=True)
class NewPage:
    photo_ref: str | None  # the photo's asset ref (storywink.pictures)
    text: str | None = None
    illustration_notes: str | None = None


def create_book(
    session: Session,
    *,
    user_id: str,
    title: str,
    child_name: str,
    art_style: str,
    pages: Sequence[NewPage],
    status: BookStatus,
    book_id: str | None = None,
    asset_salt: str | None = None,
) -> Book:
    """A book with its pages; the first page is the title page. `asset_salt`: the one its
    photos were named with (storywink.book.upload), else a new one."""
    book = Book(
        user_id=user_id,
        title=title,
        child_name=child_name,
        art_style=art_style,
        page_length=len(pages),
        status=status,
        asset_salt=asset_salt or new_asset_salt(),
    )
    if book_id is not None:
        book.id = book_id
    book.pages = [
        Page(
            page_number=number,
            is_title_page=number == 1,
            original_asset_id=ref_columns(page.photo_ref).asset_id,
            original_image_url=ref_columns(page.photo_ref).legacy_url,
            text=page.text,
            illustration_notes=page.illustration_notes,
        )
        for number, page in enumerate(pages, start=1)
    ]
    session.add(book)
    session.flush()
    book.cover_page_id = book.pages[0].id if book.pages else None
    session.commit()
    return book
