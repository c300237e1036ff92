"""The book repository: every database write of an illustration run, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from storywink import contract
from storywink.book import records as book_records
from storywink.book.records import get_book, read_claim
from storywink.book.refusals import BookBusy, BookNotFound, BookNotReady, PageNotFound
from storywink.contract import BookStatus, ModerationStatus, NotificationType
from storywink.db.connection import Database
from storywink.db.models import Book, Notification
from storywink.illustration import records as books
from tests.support import builders

pytestmark = pytest.mark.each_database

OK = ModerationStatus.OK
FLAGGED = ModerationStatus.FLAGGED
FAILED = ModerationStatus.FAILED
PENDING = ModerationStatus.PENDING

# What a page activity records: (status, image url, reason); None leaves the page PENDING.
Outcome = tuple[ModerationStatus, str | None, str | None] | None


def image(n: int) -> tuple[ModerationStatus, str, None]:
    return (OK, f"https://cdn.example/page_{n}.png", None)


FLAG = (FLAGGED, None, "generate: the image model declined (IMAGE_SAFETY)")
FAIL = (FAILED, None, "generate: retries exhausted")


def new_run() -> str:
    return f"run-{uuid.uuid4().hex}"


def new_book(
    session: Session,
    texts: Sequence[str | None] = ("The Title", "Page two.", "Page three."),
    *,
    status: BookStatus = BookStatus.STORY_READY,
    title: str = "Mia's Big Day",
) -> str:
    photos = [f"https://photos.example/{n}.jpg" for n in range(1, len(texts) + 1)]
    user_id = f"user-{uuid.uuid4().hex[:8]}"
    return builders.new_book(
        session, photos, texts=texts, status=status, title=title, user_id=user_id
    ).id


def claim(session: Session, book_id: str, run_id: str, stale_run_id: str | None = None) -> Book:
    return book_records.claim(
        session,
        books.ILLUSTRATION_RUN,
        book_id,
        contract.illustration_workflow_id(book_id),
        run_id,
        stale_run_id=stale_run_id,
    )


def record(session: Session, book_id: str, run_id: str, outcomes: Sequence[Outcome]) -> None:
    pages = get_book(session, book_id).pages
    assert len(pages) == len(outcomes)
    for page, outcome in zip(pages, outcomes, strict=True):
        if outcome is not None:
            status, url, reason = outcome
            books.record_page(session, page.id, run_id, status, image_ref=url, reason=reason)


def illustrate(session: Session, book_id: str, outcomes: Sequence[Outcome]) -> str:
    """One run that claims the book and records these page outcomes; returns its run id."""
    run_id = new_run()
    claim(session, book_id, run_id)
    record(session, book_id, run_id, outcomes)
    return run_id


@dataclass(frozen=True)
class PageState:
    number: int
    status: ModerationStatus
    url: str | None
    reason: str | None
    model_calls: int
    updated_at: datetime


@dataclass(frozen=True)
class BookState:
    status: BookStatus
    workflow_id: str | None
    run_id: str | None
    image_count: int
    updated_at: datetime
    pages: tuple[PageState, ...]
    notifications: tuple[tuple[NotificationType, str, str], ...]  # type, run id, user id


def stored(database: Database, book_id: str) -> BookState:
    """The book as a fresh session reads it from the database."""
    with database.sessions() as session:
        book = get_book(session, book_id)
        notes = session.scalars(
            select(Notification)
            .where(Notification.book_id == book_id)
            .order_by(Notification.created_at)
        )
        return BookState(
            status=book.status,
            workflow_id=book.claim_workflow_id,
            run_id=book.claim_run_id,
            image_count=book.image_count,
            updated_at=book.updated_at,
            pages=tuple(
                PageState(
                    p.page_number,
                    p.moderation_status,
                    p.generated_image_url,
                    p.moderation_reason,
                    p.model_calls,
                    p.updated_at,
                )
                for p in book.pages
            ),
            notifications=tuple((n.type, n.run_id, n.user_id) for n in notes),
        )


def page_outcomes(state: BookState) -> list[tuple[ModerationStatus, str | None, str | None]]:
    return [(p.status, p.url, p.reason) for p in state.pages]


# -- finalize ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("texts", "outcomes", "expected", "notification"),
    [
        pytest.param(
            ("T", "a", "b"),
            [image(1), image(2), image(3)],
            BookStatus.COMPLETED,
            NotificationType.BOOK_COMPLETED,
            id="every-page-has-an-image",
        ),
        pytest.param(
            (None, None, None),
            [image(1), FLAG, FAIL],
            BookStatus.PARTIAL,
            NotificationType.BOOK_PARTIAL,
            id="some-page-has-an-image",
        ),
        pytest.param(
            ("T", "a", "b"),
            [FAIL, FLAG, FAIL],
            BookStatus.PARTIAL,
            NotificationType.BOOK_PARTIAL,
            id="no-image-but-text",
        ),
        pytest.param(
            (None, "", "   "),
            [FAIL, FLAG, FAIL],
            BookStatus.FAILED,
            NotificationType.BOOK_FAILED,
            id="no-image-no-text",
        ),
        pytest.param(
            ("T", "a", "b"),
            [image(1), image(2), (OK, None, None)],
            BookStatus.PARTIAL,
            NotificationType.BOOK_PARTIAL,
            id="ok-without-url-is-not-an-image",
        ),
    ],
)
def test_finalize_sets_status_by_the_rule_and_notifies_the_owner_once(
    database: Database,
    session: Session,
    texts: Sequence[str | None],
    outcomes: Sequence[Outcome],
    expected: BookStatus,
    notification: NotificationType,
) -> None:
    book_id = new_book(session, texts)
    owner = get_book(session, book_id).user_id
    run_id = illustrate(session, book_id, outcomes)

    outcome = books.settle_book(session, book_id, run_id, settling_run_id=run_id, cancelled=False)

    assert outcome.status is expected
    assert outcome.notification_type is notification
    state = stored(database, book_id)
    assert state.status is expected
    assert (state.workflow_id, state.run_id) == (None, None)
    assert state.notifications == ((notification, run_id, owner),)


def test_finalize_outcome_counts_pages(session: Session) -> None:
    book_id = new_book(session, ("T", "a", "b", "c"))
    run_id = illustrate(session, book_id, [image(1), FLAG, FAIL, image(4)])

    outcome = books.settle_book(session, book_id, run_id, settling_run_id=run_id, cancelled=False)

    assert (outcome.pages_total, outcome.pages_with_image) == (4, 2)
    assert (outcome.pages_flagged, outcome.pages_failed) == (1, 1)


def test_finalize_twice_changes_nothing_the_second_time(
    database: Database, session: Session
) -> None:
    book_id = new_book(session)
    run_id = illustrate(session, book_id, [image(1), image(2), FAIL])
    first = books.settle_book(session, book_id, run_id, settling_run_id=run_id, cancelled=False)
    after_first = stored(database, book_id)

    second = books.settle_book(session, book_id, run_id, settling_run_id=run_id, cancelled=False)

    assert first.status is second.status is BookStatus.PARTIAL
    assert stored(database, book_id) == after_first
    assert len(after_first.notifications) == 1


@pytest.mark.parametrize("cancelled", [False, True])
def test_finalize_by_a_run_without_the_claim_changes_nothing(
    database: Database, session: Session, cancelled: bool
) -> None:
    book_id = new_book(session)
    holder = illustrate(session, book_id, [image(1), None, None])
    before = stored(database, book_id)

    books.settle_book(session, book_id, new_run(), settling_run_id=new_run(), cancelled=cancelled)

    after = stored(database, book_id)
    assert after == before
    assert (after.status, after.run_id) == (BookStatus.ILLUSTRATING, holder)
    assert after.notifications == ()


def test_cancelled_finalize_fails_the_pages_not_drawn_and_settles_the_book(
    database: Database, session: Session
) -> None:
    book_id = new_book(session, ("T", "a", "b", "c"))
    run_id = illustrate(session, book_id, [image(1), FLAG, None, None])

    outcome = books.settle_book(session, book_id, run_id, settling_run_id=run_id, cancelled=True)

    assert outcome.status is BookStatus.PARTIAL
    assert outcome.cancelled
    assert outcome.pages_failed == 2
    state = stored(database, book_id)
    assert state.status is BookStatus.PARTIAL
    not_started = "cancelled: the illustration run was cancelled before this page was started"
    assert page_outcomes(state) == [
        image(1),
        FLAG,
        (FAILED, None, not_started),
        (FAILED, None, not_started),
    ]
    assert [n[0] for n in state.notifications] == [NotificationType.BOOK_PARTIAL]


def test_a_cancelled_run_is_told_as_stopped_not_as_partly_illustrated(
    database: Database, session: Session
) -> None:
    book_id = new_book(session, ("T", "a", "b"))
    run_id = illustrate(session, book_id, [None, None, None])

    books.settle_book(session, book_id, run_id, settling_run_id=run_id, cancelled=True)

    with database.sessions() as fresh:
        note = fresh.scalars(select(Notification).where(Notification.book_id == book_id)).one()
    assert note.title.endswith("was stopped")
    assert "0 of 3 pages are illustrated" in note.message
    assert "retry the missing pages" not in note.message


def test_the_notification_title_fits_its_column_whatever_the_book_title(
    database: Database, session: Session
) -> None:
    book_id = new_book(session, ("T", "a"), title="T" * 200)
    run_id = illustrate(session, book_id, [FAIL, FAIL])

    books.settle_book(session, book_id, run_id, settling_run_id=run_id, cancelled=False)

    with database.sessions() as fresh:
        note = fresh.scalars(select(Notification).where(Notification.book_id == book_id)).one()
    assert len(note.title) <= 200
    assert note.title.endswith("… is partly illustrated")


def test_each_settled_outcome_of_one_claim_gets_its_own_notification(
    database: Database, session: Session
) -> None:
    """A reset run keeps its chain's claim; settling again is a new outcome to tell."""
    book_id = new_book(session, ("T", "a"))
    chain = illustrate(session, book_id, [image(1), FAIL])
    books.settle_book(session, book_id, chain, settling_run_id=chain, cancelled=False)
    book_records.claim(
        session, books.ILLUSTRATION_RUN, book_id, contract.illustration_workflow_id(book_id), chain
    )
    books.settle_book(session, book_id, chain, settling_run_id=new_run(), cancelled=False)

    assert len(stored(database, book_id).notifications) == 2


# -- claim and smart retry ----------------------------------------------------------------


def test_retry_of_a_partial_book_redraws_only_pages_without_image_that_were_not_flagged(
    database: Database, session: Session
) -> None:
    book_id = new_book(session, ("T", "a", "b", "c"))
    first_run = illustrate(session, book_id, [image(1), FLAG, FAIL, (OK, None, None)])
    books.settle_book(session, book_id, first_run, settling_run_id=first_run, cancelled=False)
    assert stored(database, book_id).status is BookStatus.PARTIAL

    second_run = new_run()
    book = claim(session, book_id, second_run)

    assert [p.page_number for p in books.pages_to_draw(book)] == [3, 4]
    state = stored(database, book_id)
    assert (state.status, state.run_id) == (BookStatus.ILLUSTRATING, second_run)
    assert page_outcomes(state) == [image(1), FLAG, (PENDING, None, None), (PENDING, None, None)]


def test_retry_of_a_failed_book_keeps_flagged_pages(database: Database, session: Session) -> None:
    book_id = new_book(session, (None, None))
    first_run = illustrate(session, book_id, [FLAG, FAIL])
    books.settle_book(session, book_id, first_run, settling_run_id=first_run, cancelled=False)
    assert stored(database, book_id).status is BookStatus.FAILED

    book = claim(session, book_id, new_run())

    assert [p.page_number for p in books.pages_to_draw(book)] == [2]
    assert page_outcomes(stored(database, book_id)) == [FLAG, (PENDING, None, None)]


def test_retry_with_nothing_left_to_draw_settles_without_changing_pages(
    database: Database, session: Session
) -> None:
    book_id = new_book(session)
    first_run = illustrate(session, book_id, [image(1), image(2), FLAG])
    books.settle_book(session, book_id, first_run, settling_run_id=first_run, cancelled=False)
    second_run = new_run()

    book = claim(session, book_id, second_run)
    assert books.pages_to_draw(book) == []
    outcome = books.settle_book(
        session, book_id, second_run, settling_run_id=second_run, cancelled=False
    )

    assert outcome.status is BookStatus.PARTIAL
    state = stored(database, book_id)
    assert page_outcomes(state) == [image(1), image(2), FLAG]
    assert [(n[0], n[1]) for n in state.notifications] == [
        (NotificationType.BOOK_PARTIAL, first_run),
        (NotificationType.BOOK_PARTIAL, second_run),
    ]


def test_claim_of_a_story_ready_book_redraws_every_page(
    database: Database, session: Session
) -> None:
    book_id = new_book(session)
    first_run = illustrate(session, book_id, [image(1), FLAG, FAIL])
    books.settle_book(session, book_id, first_run, settling_run_id=first_run, cancelled=False)
    # The story was rewritten since: the book is STORY_READY again with old pictures.
    get_book(session, book_id).status = BookStatus.STORY_READY
    session.commit()

    book = claim(session, book_id, new_run())

    assert [p.page_number for p in books.pages_to_draw(book)] == [1, 2, 3]
    assert page_outcomes(stored(database, book_id)) == [(PENDING, None, None)] * 3


@pytest.mark.parametrize("status", [BookStatus.DRAFT, BookStatus.GENERATING, BookStatus.COMPLETED])
def test_claim_is_refused_for_a_book_not_ready(
    database: Database, session: Session, status: BookStatus
) -> None:
    book_id = new_book(session, status=status)
    before = stored(database, book_id)

    with pytest.raises(BookNotReady) as refused:
        claim(session, book_id, new_run())

    assert refused.value.status is status
    assert status.value in str(refused.value)
    assert stored(database, book_id) == before


def test_claim_is_refused_while_another_run_illustrates_the_book(
    database: Database, session: Session
) -> None:
    book_id = new_book(session)
    holder = illustrate(session, book_id, [image(1), None, None])
    before = stored(database, book_id)

    with pytest.raises(BookNotReady) as refused:
        claim(session, book_id, new_run())

    assert refused.value.status is BookStatus.ILLUSTRATING
    assert stored(database, book_id) == before
    assert before.run_id == holder


def test_only_one_of_two_concurrent_claims_wins(database: Database) -> None:
    with database.sessions() as setup:
        book_id = new_book(setup)
    first, second = new_run(), new_run()
    with database.sessions() as one, database.sessions() as two:
        get_book(two, book_id)  # the second caller read the book before the first claimed
        claim(one, book_id, first)
        with pytest.raises(BookNotReady):
            claim(two, book_id, second)

    assert stored(database, book_id).run_id == first


def test_claim_by_the_same_run_twice_keeps_recorded_pages(
    database: Database, session: Session
) -> None:
    book_id = new_book(session)
    run_id = illustrate(session, book_id, [image(1), FLAG, None])

    book = claim(session, book_id, run_id)  # e.g. a retried prepare activity

    assert book.claim_run_id == run_id
    state = stored(database, book_id)
    assert (state.status, state.run_id) == (BookStatus.ILLUSTRATING, run_id)
    assert page_outcomes(state) == [image(1), FLAG, (PENDING, None, None)]


def test_takeover_from_the_stale_run_keeps_pages_it_finished(
    database: Database, session: Session
) -> None:
    book_id = new_book(session)
    stale = illustrate(session, book_id, [image(1), FAIL, None])
    successor = new_run()

    book = claim(session, book_id, successor, stale_run_id=stale)

    assert [p.page_number for p in books.pages_to_draw(book)] == [2, 3]
    state = stored(database, book_id)
    assert (state.status, state.run_id) == (BookStatus.ILLUSTRATING, successor)
    assert state.workflow_id == contract.illustration_workflow_id(book_id)
    assert page_outcomes(state) == [image(1), (PENDING, None, None), (PENDING, None, None)]


def test_takeover_naming_the_wrong_stale_run_is_refused(
    database: Database, session: Session
) -> None:
    book_id = new_book(session)
    holder = illustrate(session, book_id, [image(1), None, None])
    before = stored(database, book_id)

    with pytest.raises(BookBusy):
        claim(session, book_id, new_run(), stale_run_id=new_run())

    assert stored(database, book_id) == before
    assert before.run_id == holder


# -- pages ----------------------------------------------------------------------------------


def test_record_page_repeated_by_the_same_run_returns_the_first_outcome(
    database: Database, session: Session
) -> None:
    book_id = new_book(session)
    run_id = illustrate(session, book_id, [None, None, None])
    page_id = get_book(session, book_id).pages[1].id
    first = books.record_page(session, page_id, run_id, OK, image_ref="https://cdn.example/a.png")
    before = stored(database, book_id)

    again = books.record_page(session, page_id, run_id, FAILED, reason="fetch photo: gone")

    assert again == first
    assert again.moderation_status is OK
    assert again.generated_image_url == "https://cdn.example/a.png"
    assert stored(database, book_id) == before


def test_a_run_that_lost_the_claim_cannot_overwrite_a_page(
    database: Database, session: Session
) -> None:
    book_id = new_book(session)
    stale = illustrate(session, book_id, [None, None, None])
    successor = new_run()
    claim(session, book_id, successor, stale_run_id=stale)
    page_id = get_book(session, book_id).pages[0].id
    books.record_page(session, page_id, successor, OK, image_ref="https://cdn.example/new.png")

    # A late activity of the stale run finishes after the takeover.
    books.record_page(session, page_id, stale, FAILED, reason="generate: retries exhausted")

    page = stored(database, book_id).pages[0]
    assert (page.status, page.url) == (OK, "https://cdn.example/new.png")


def test_record_page_of_an_unknown_page_fails(session: Session) -> None:
    with pytest.raises(PageNotFound):
        books.record_page(session, uuid.uuid4().hex, new_run(), OK, image_ref="x")


def test_a_run_without_the_claim_has_nothing_to_draw(database: Database, session: Session) -> None:
    book_id = new_book(session, ("T", "a"))
    holder = illustrate(session, book_id, [image(1), None])
    page_id = get_book(session, book_id).pages[1].id

    assert books.settled_result(session, page_id, holder) is None  # pending: draw it
    as_it_stands = books.settled_result(session, page_id, new_run())
    assert as_it_stands is not None and as_it_stands.moderation_status is ModerationStatus.PENDING


def test_a_draft_is_found_for_the_runs_named_only(session: Session) -> None:
    book_id = new_book(session, ("T",))
    page_id = get_book(session, book_id).pages[0].id
    earlier = new_run()
    books.save_draft(session, page_id, earlier, b"png", "image/png")

    assert books.load_draft(session, page_id, (new_run(),)) is None
    assert books.load_draft(session, page_id, (new_run(), earlier)) == (b"png", "image/png")


def test_count_model_call_counts_on_the_page_and_its_book_only(
    database: Database, session: Session
) -> None:
    book_id = new_book(session)
    other_id = new_book(session)
    pages = get_book(session, book_id).pages

    books.count_model_call(session, pages[0].id)
    books.count_model_call(session, pages[0].id)
    books.count_model_call(session, pages[2].id)

    state = stored(database, book_id)
    assert [p.model_calls for p in state.pages] == [2, 0, 1]
    assert state.image_count == 3
    other = stored(database, other_id)
    assert other.image_count == 0
    assert [p.model_calls for p in other.pages] == [0, 0, 0]


# -- unknown book ---------------------------------------------------------------------------


@pytest.mark.parametrize("operation", ["get", "read_claim", "claim", "finalize"])
def test_unknown_book_is_not_found(session: Session, operation: str) -> None:
    book_id = uuid.uuid4().hex
    with pytest.raises(BookNotFound) as missing:
        if operation == "get":
            get_book(session, book_id)
        elif operation == "read_claim":
            read_claim(session, book_id)
        elif operation == "claim":
            claim(session, book_id, new_run())
        else:
            books.settle_book(
                session, book_id, new_run(), settling_run_id=new_run(), cancelled=False
            )
    assert missing.value.book_id == book_id
    assert book_id in str(missing.value)
