"""Texts at the door: a story file's pages get the checks `page set-text` applies, no
control character reaches a title, a name or a terminal, no drawing runs unbounded on a
text, and a page already drawn (or declined) keeps the text its picture shows."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from storywink.book.inputs import BookInputError, NewBook
from storywink.contract import BookStatus, ModerationStatus
from storywink.db.connection import Database
from storywink.db.engine import make_engine, make_session_factory
from storywink.db.models import Book, Page
from storywink.demo.sample_book import sample_photo_bytes, write_sample_photos
from storywink.providers.base import IllustrationJob, SourceImage
from storywink.providers.local_illustrator import LocalIllustrator
from storywink.story.records import PageTextRefused, update_page_text
from tests.support.commands import book_count, create, plain, storywink, write_story
from tests.support.helpers import create_book

STORY_OK = ["Mia's Day", "Mia runs in the park.", "Mia sleeps."]


@pytest.mark.parametrize(
    ("page_two", "problem"),
    [
        ("x " * 5000, "page 2: text longer than 600 characters"),
        ("", "page 2: no text"),
        ("   ", "page 2: no text"),
        ("One. Two. Three. Four. Five.", "page 2: 5 sentences"),
        ("Mia \x1b[31mruns.", "page 2: text holds a control character (U+001B)"),
    ],
    ids=["10000-chars", "empty", "blank", "5-sentences", "escape"],
)
def test_a_story_file_gets_the_checks_of_set_text(
    tmp_path: Path, page_two: str, problem: str
) -> None:
    write_sample_photos(tmp_path / "photos", 3)
    story = write_story(tmp_path, [STORY_OK[0], page_two, STORY_OK[2]])

    result = create(tmp_path, "--story", story.name)

    assert result.returncode == 2
    assert f"story.json: {problem}" in plain(result.stderr)
    assert book_count(tmp_path) == 0


def test_a_story_file_s_whitespace_is_collapsed_as_set_text_does(tmp_path: Path) -> None:
    write_sample_photos(tmp_path / "photos", 3)
    story = write_story(tmp_path, [STORY_OK[0], " Mia\n runs  in the park. ", STORY_OK[2]])

    result = create(tmp_path, "--story", story.name)

    assert result.returncode == 0, result.stderr
    shown = storywink(tmp_path, "status", result.stdout.strip(), "--json")
    assert [p["text"] for p in json.loads(shown.stdout)["pages"]] == STORY_OK


async def test_no_drawing_runs_unbounded_on_a_long_text() -> None:
    photo = SourceImage(sample_photo_bytes(1), "image/jpeg")
    for text in ("x" * 10_000, "word " * 2_000):
        job = IllustrationJob(
            prompt="", photo=photo, style_reference=None, style_key="vignette",
            text=text, title="T", is_title_page=False,
        )  # fmt: skip
        async with asyncio.timeout(15):  # today's word wrap: minutes
            await LocalIllustrator(256).illustrate(job)


@pytest.mark.parametrize(
    ("field", "value"),
    [("title", "Mia\x1b[31m's Day"), ("child_name", "Mia\nLeo"), ("user_id", "u\x00")],
)
def test_control_characters_in_a_title_or_name_are_refused_naming_the_field(
    field: str, value: str
) -> None:
    fields = {"title": "T", "child_name": "Mia", "art_style": "vignette", field: value}
    with pytest.raises(BookInputError, match=rf"{field}: .*control character"):
        NewBook.checked(**fields)


def test_status_never_writes_a_stored_control_character_to_the_terminal(
    tmp_path: Path,
) -> None:
    write_sample_photos(tmp_path / "photos", 2)
    created = create(tmp_path)
    book_id = created.stdout.strip()
    engine = make_engine(f"sqlite:///{tmp_path / 'storywink.db'}")
    with make_session_factory(engine)() as session:  # stored before the checks existed
        session.execute(update(Book).values(title="Red\x1b[31m\nSecond line"))
        session.commit()
    engine.dispose()

    result = storywink(tmp_path, "status", book_id)

    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout
    assert result.stdout.splitlines()[0].startswith("Red\ufffd[31m\ufffdSecond line (")


def _settle(session: Session, book_id: str, status: BookStatus, pages: list[str]) -> None:
    book = session.get(Book, book_id)
    assert book is not None
    book.status = status
    for page, outcome in zip(book.pages, pages, strict=True):
        page.moderation_status = ModerationStatus(outcome)
        page.generated_image_url = "file:///drawn.png" if outcome == "OK" else None
    session.commit()


@pytest.mark.each_database  # the edit locks the book's row
def test_set_text_is_refused_on_a_page_that_will_not_be_drawn_again(
    session: Session, database: Database
) -> None:
    completed = create_book(database, [None, None, None])
    _settle(session, completed, BookStatus.COMPLETED, ["OK", "OK", "OK"])
    partial = create_book(database, [None, None, None])
    _settle(session, partial, BookStatus.PARTIAL, ["OK", "FLAGGED", "FAILED"])

    for book_id, page, why in [
        (completed, 2, "already illustrated (book COMPLETED)"),
        (partial, 1, "already illustrated (book PARTIAL)"),
        (partial, 2, "declined by the image model (book PARTIAL)"),
    ]:
        with pytest.raises(PageTextRefused, match=rf"page {page} of book \w+ is {re.escape(why)}"):
            update_page_text(session, book_id, page, "New words.")
        session.rollback()
    edited = update_page_text(session, partial, 3, "New words.")  # drawn by the next run
    assert edited.text == "New words."
    assert session.get(Page, edited.id) is not None
