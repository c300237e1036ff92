"""The Alembic migrations build exactly the schema the models describe."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, MetaData, Table, select

from storywink import contract
from storywink.book.records import Claim, get_book, read_claim
from storywink.contract import BookStatus, ModerationStatus
from storywink.db.connection import Database
from storywink.db.engine import alembic_config, make_engine, make_session_factory, upgrade_to_head
from storywink.db.models import Base, ModelQuota
from storywink.illustration import records as books
from storywink.quota.idle_poll import IdlePollTurn
from storywink.quota.limiter import SharedLimiter
from storywink.story import records as story_books
from storywink.story.answer import PageText
from tests.support.services import postgres_database

pytestmark = pytest.mark.each_database


def test_migrated_schema_matches_the_models(database: Database) -> None:
    with database.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []


def test_upgrading_a_database_with_a_book_mid_run_keeps_it_and_its_claim(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The migrations since 0002 (model quota, story columns, the fleet identity) run
    on a database that holds a book being illustrated, as a deploy meets it: the rows, the
    claim and the drawn page survive, and the current code reads them and settles the book
    for the run that holds it."""
    with _fresh_database(database_url, tmp_path_factory) as url:
        engine = make_engine(url)
        try:
            command.upgrade(alembic_config(engine), "0002")
            _insert_book_mid_run(engine)
            upgrade_to_head(engine)
            with make_session_factory(engine)() as session:
                book = get_book(session, "old-book")
                claim = read_claim(session, "old-book")
                pages = [(p.moderation_status, p.generated_image_url) for p in book.pages]
                new_columns = (book.story_error, book.pages[0].text_problem)
                versions = [(p.image_version, p.redraw_ask_id) for p in book.pages]
            with make_session_factory(engine)() as session:
                outcome = books.settle_book(
                    session, "old-book", RUN_ID, settling_run_id=RUN_ID, cancelled=False
                )
                settled = read_claim(session, "old-book")
        finally:
            engine.dispose()
    assert claim == Claim(BookStatus.ILLUSTRATING, "book-illustration-old-book", RUN_ID)
    assert new_columns == (None, None)
    assert versions == [(0, None), (0, None)]  # 0007: the first drawing, no redraw yet
    assert pages == [
        (ModerationStatus.OK, "https://cdn.example/p1.png"),
        (ModerationStatus.PENDING, None),
    ]
    assert outcome.status is BookStatus.PARTIAL
    assert settled == Claim(BookStatus.PARTIAL, None, None)


def test_upgrading_to_private_images_keeps_a_book_mid_run_and_its_public_urls(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """0008 on a book being illustrated: every book gets an asset salt; a photo in local
    storage (never public) is found by its asset id; a public URL stays where the previous
    release reads it, and is shown as before; the current code records the next page by its
    asset id beside it and settles the book for the run that holds it."""
    local_photo = "file:///srv/storage/storywink/old-book/originals/page_2.png"
    with _fresh_database(database_url, tmp_path_factory) as url:
        engine = make_engine(url)
        try:
            command.upgrade(alembic_config(engine), "0007")
            _insert_book_mid_run(engine)
            _set_photos(engine, {1: "https://cdn.example/o1.jpg", 2: local_photo})
            upgrade_to_head(engine)
            with make_session_factory(engine)() as session:
                book = get_book(session, "old-book")
                salt = book.asset_salt
                before = [
                    (p.original_asset_id, p.original_image_url, p.photo_ref, p.picture_ref)
                    for p in book.pages
                ]
                picture = contract.page_public_id("old-book", 2, 0, salt)
                books.record_page(
                    session, "old-page-2", RUN_ID, ModerationStatus.OK, image_ref=picture
                )
                outcome = books.settle_book(
                    session, "old-book", RUN_ID, settling_run_id=RUN_ID, cancelled=False
                )
                after = [(p.generated_asset_id, p.generated_image_url) for p in book.pages]
        finally:
            engine.dispose()
    assert salt is not None and len(salt) == 32
    assert before == [
        (None, "https://cdn.example/o1.jpg", "https://cdn.example/o1.jpg", P1),
        (
            "storywink/old-book/originals/page_2",
            local_photo,
            "storywink/old-book/originals/page_2",
            None,
        ),
    ]
    assert after == [(None, P1), (picture, None)]
    assert outcome.status is BookStatus.COMPLETED


def _set_photos(engine: Engine, photos: dict[int, str]) -> None:
    pages = Table("pages", MetaData(), autoload_with=engine)
    with engine.begin() as connection:
        for number, url in photos.items():
            connection.execute(
                pages.update()
                .where(pages.c.id == f"old-page-{number}")
                .values(original_image_url=url)
            )


def test_a_claim_is_where_the_previous_release_reads_it(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The claim is `claim_workflow_id` / `claim_run_id` in the code and stays in the
    columns the previous release's workers read (`illustration_*`): a story run's claim
    written there is today's claim, and one today's code takes is read there, so both
    releases agree on who holds a book while the old one drains."""
    story_claim = ("book-story-old-book", RUN_ID)
    with _fresh_database(database_url, tmp_path_factory) as url:
        engine = make_engine(url)
        try:
            upgrade_to_head(engine)
            _insert_book_mid_run(engine, status="GENERATING", claim=story_claim)
            with make_session_factory(engine)() as session:
                read_today = read_claim(session, "old-book")
                texts = [PageText(n, f"Text {n}", None) for n in (1, 2)]
                outcome = story_books.record_story(session, "old-book", RUN_ID, texts)
            released = _old_claim_columns(engine)
        finally:
            engine.dispose()
    assert read_today == Claim(BookStatus.GENERATING, *story_claim)
    assert (outcome.status, outcome.pages_written) == (BookStatus.STORY_READY, 2)
    assert released == ("STORY_READY", None, None)


RUN_ID = "0190a9b2-0000-7000-8000-000000000001"
P1 = "https://cdn.example/p1.png"


async def test_upgrading_a_fleet_mid_run_keeps_its_limiter_and_gives_it_an_idle_turn(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """0009 on a database whose limiter is in use (a rate lowered by a 429, slots
    reserved ahead): the row keeps its state, nobody holds the idle poll's turn, and a
    worker of the new release takes it."""
    with _fresh_database(database_url, tmp_path_factory) as url:
        engine = make_engine(url)
        try:
            command.upgrade(alembic_config(engine), "0008")
            quota_table = Table("model_quota", MetaData(), autoload_with=engine)
            with engine.begin() as connection:
                connection.execute(
                    quota_table.insert().values(
                        name="image-model",
                        rate=27.0,
                        overrun=30.0,
                        next_free=1e9 + 4.0,
                        hold_until=1e9,
                        epoch=3,
                        far=False,
                        early_at=0.0,
                    )
                )
            upgrade_to_head(engine)
            sessions = make_session_factory(engine)
            limiter = SharedLimiter(sessions, 30.0, clock=lambda: 1e9)
            with sessions() as session:
                row = session.get_one(ModelQuota, "image-model")
                kept = (row.rate, row.next_free, row.epoch, row.idle_poller)
            turn = IdlePollTurn(limiter, "build-2", clock=lambda: 1e9)
            taken = await turn.take()
        finally:
            engine.dispose()
    assert kept == (27.0, 1e9 + 4.0, 3, None)
    assert taken and turn.held


@contextmanager
def _fresh_database(kind_of: str, tmp: pytest.TempPathFactory) -> Iterator[str]:
    if kind_of.startswith("sqlite"):
        yield f"sqlite:///{tmp.mktemp('old') / 'old.db'}"
    else:
        yield from postgres_database(f"storywink_old_{uuid.uuid4().hex[:12]}")


def _old_claim_columns(engine: Engine) -> tuple[str, str | None, str | None]:
    books_table = Table("books", MetaData(), autoload_with=engine)
    with engine.connect() as connection:
        row = connection.execute(
            select(
                books_table.c.status,
                books_table.c.illustration_workflow_id,
                books_table.c.illustration_run_id,
            )
        ).one()
    return row[0], row[1], row[2]


def _insert_book_mid_run(
    engine: Engine,
    *,
    status: str = "ILLUSTRATING",
    claim: tuple[str, str] = ("book-illustration-old-book", RUN_ID),
) -> None:
    """A book as the previous releases write it: its claim in the `illustration_*`
    columns (which hold a story run's claim too)."""
    tables = MetaData()
    tables.reflect(engine, only=["books", "pages"])
    now = datetime.now(UTC)
    counters = {"prompt_tokens": 0, "output_tokens": 0, "image_count": 0, "cost_micro_usd": 0}
    with engine.begin() as connection:
        connection.execute(
            tables.tables["books"].insert(),
            {
                "id": "old-book", "user_id": "u", "title": "Old", "child_name": "Mia",
                "status": status, "art_style": "vignette", "page_length": 2,
                "illustration_workflow_id": claim[0],
                "illustration_run_id": claim[1], "created_at": now, "updated_at": now,
                **counters,
            },
        )  # fmt: skip
        for number, status, url in ((1, "OK", "https://cdn.example/p1.png"), (2, "PENDING", None)):
            connection.execute(
                tables.tables["pages"].insert(),
                {
                    "id": f"old-page-{number}", "book_id": "old-book", "page_number": number,
                    "is_title_page": number == 1, "text": f"Page {number}",
                    "moderation_status": status, "generated_image_url": url,
                    "model_calls": 1 if url else 0, "created_at": now, "updated_at": now,
                },
            )  # fmt: skip
