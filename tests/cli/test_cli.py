"""The real `storywink` console script: creating books and reading their status."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from storywink.demo.sample_book import write_sample_photos
from tests.support.commands import (
    book_count,
    create,
    ensure_database,
    original_photos,
    plain,
    same_pixels,
    status_json,
    storywink,
    write_story,
)


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
    ensure_database(tmp_path)
    result = storywink(tmp_path, "status", "no-such-book", "--json")

    assert result.returncode != 0
    assert result.stdout == ""
    assert "book no-such-book not found" in plain(result.stderr)
    assert "Traceback" not in result.stderr
