"""The real `storywink` console script: creating books and reading their status."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from PIL import Image, ImageChops
from sqlalchemy import func, select

from storywink.db.engine import make_engine, make_session_factory
from storywink.db.models import Book, Page
from storywink.demo.sample_book import write_sample_photos

STORYWINK = Path(sys.executable).parent / "storywink"
SECRET_NAMES = {"GEMINI_API_KEY", "GOOGLE_API_KEY", "CLOUDINARY_URL", "ILLUSTRATOR", "STORAGE"}


def cli_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.upper() not in SECRET_NAMES}
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'storywink.db'}",
        STORAGE_DIR=str(tmp_path / "storage"),
        # Wide enough that error panels never wrap a message.
        COLUMNS="400",
        TERMINAL_WIDTH="400",
    )
    return env


def storywink(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(STORYWINK), *args],
        cwd=tmp_path,
        env=cli_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )


def plain(text: str) -> str:
    """stderr without the box drawing of the error panel, whitespace collapsed."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


def write_story(tmp_path: Path, pages: list[str]) -> Path:
    path = tmp_path / "story.json"
    path.write_text(json.dumps({"pages": pages}), encoding="utf-8")
    return path


def create(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return storywink(
        tmp_path, "book", "create", "--photos", "photos", "--title", "Mia's Day",
        "--child-name", "Mia", *extra,
    )  # fmt: skip


def status_json(tmp_path: Path, book_id: str) -> dict[str, Any]:
    result = storywink(tmp_path, "status", book_id, "--json")
    assert result.returncode == 0, result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def book_count(tmp_path: Path) -> int:
    database = tmp_path / "storywink.db"
    if not database.exists():
        return 0
    engine = make_engine(f"sqlite:///{database}")
    try:
        with make_session_factory(engine)() as session:
            return session.scalar(select(func.count()).select_from(Book)) or 0
    finally:
        engine.dispose()


def original_photos(tmp_path: Path, book_id: str) -> list[Path]:
    engine = make_engine(f"sqlite:///{tmp_path / 'storywink.db'}")
    try:
        with make_session_factory(engine)() as session:
            urls = session.scalars(
                select(Page.original_image_url)
                .where(Page.book_id == book_id)
                .order_by(Page.page_number)
            ).all()
    finally:
        engine.dispose()
    return [Path(unquote(urlsplit(url or "").path)) for url in urls]


def same_pixels(a: Path, b: Path) -> bool:
    with Image.open(a) as first, Image.open(b) as second:
        return ImageChops.difference(first.convert("RGB"), second.convert("RGB")).getbbox() is None


def test_create_with_a_story_prints_only_the_id_and_the_book_is_story_ready(
    tmp_path: Path,
) -> None:
    write_sample_photos(tmp_path / "photos", 3)
    texts = ["Mia's Day", "Mia runs in the park.", "Mia sleeps."]
    story = write_story(tmp_path, texts)

    result = create(tmp_path, "--story", story.name)

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    book_id = lines[0]
    assert re.fullmatch(r"[0-9a-f]{32}", book_id)
    book = status_json(tmp_path, book_id)
    assert book["status"] == "STORY_READY"
    assert [p["text"] for p in book["pages"]] == texts
    assert [p["page_number"] for p in book["pages"]] == [1, 2, 3]
    for page in book["pages"]:
        assert page["moderation_status"] == "PENDING"
        assert page["moderation_reason"] is None
        assert page["generated_image_url"] is None


def test_create_without_a_story_is_a_draft_with_photos_in_file_name_order(
    tmp_path: Path,
) -> None:
    samples = write_sample_photos(tmp_path / "samples", 3)
    photos = tmp_path / "photos"
    photos.mkdir()
    # Written in another order than their names sort in.
    for sample, name in zip(samples, ("b.jpg", "c.JPG", "a.jpg"), strict=True):
        sample.rename(photos / name)
    (photos / ".DS_Store").write_bytes(b"hidden files are not the parent's photos")

    result = create(tmp_path)

    assert result.returncode == 0, result.stderr
    book_id = result.stdout.strip()
    book = status_json(tmp_path, book_id)
    assert book["status"] == "DRAFT"
    assert [p["page_number"] for p in book["pages"]] == [1, 2, 3]
    assert [p["is_title_page"] for p in book["pages"]] == [True, False, False]
    assert all(p["text"] is None for p in book["pages"])
    stored = original_photos(tmp_path, book_id)
    expected = [photos / "a.jpg", photos / "b.jpg", photos / "c.JPG"]
    assert [same_pixels(s, e) for s, e in zip(stored, expected, strict=True)] == [True] * 3


@pytest.mark.parametrize(
    ("case", "problem"),
    [
        ("story-with-wrong-page-count", "2 pages of text for 3 photos"),
        ("unknown-style", "unknown style 'cubism'; known: vignette, crayon, storybook"),
        ("empty-photo-folder", "no photos"),
        ("jpg-that-is-not-an-image", "03.jpg: not a decodable image"),
        ("story-that-is-not-json", "story.json"),
    ],
)
def test_create_refuses_bad_input_clearly_and_creates_no_book(
    tmp_path: Path, case: str, problem: str
) -> None:
    photos = tmp_path / "photos"
    extra: list[str] = []
    if case == "empty-photo-folder":
        photos.mkdir()
        (photos / ".thumbnails.jpg").write_text("hidden: ignored")
    else:
        write_sample_photos(photos, 3)
    if case == "story-with-wrong-page-count":
        extra = ["--story", write_story(tmp_path, ["Title", "Only one page"]).name]
    elif case == "unknown-style":
        extra = ["--style", "cubism"]
    elif case == "jpg-that-is-not-an-image":
        (photos / "03.jpg").write_text("this is a text file, not a photo")
    elif case == "story-that-is-not-json":
        (tmp_path / "story.json").write_text("Once upon a time")
        extra = ["--story", "story.json"]

    result = create(tmp_path, *extra)

    assert result.returncode != 0
    assert result.stdout == ""
    assert problem in plain(result.stderr)
    assert "Traceback" not in result.stderr
    assert book_count(tmp_path) == 0


def test_status_of_an_unknown_book_fails_clearly(tmp_path: Path) -> None:
    result = storywink(tmp_path, "status", "no-such-book", "--json")

    assert result.returncode != 0
    assert result.stdout == ""
    assert "book no-such-book not found" in plain(result.stderr)
    assert "Traceback" not in result.stderr
