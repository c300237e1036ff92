"""`storywink page redraw` as a real subprocess, with a worker in this process."""

from __future__ import annotations

from pathlib import Path

import pytest

from storywink.cli import ExitCode
from storywink.contract import BookStatus
from tests.support.commands import storywink_on
from tests.support.pipeline import Pipeline

pytestmark = pytest.mark.process


async def test_page_redraw_draws_the_page_again_with_the_note_and_refuses_clearly(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    book_id = pipeline.book(2, photos="p")
    await pipeline.illustrate(book_id)
    async with pipeline.worker():
        code, out, err = await storywink_on(
            pipeline.settings, tmp_path, "page", "redraw", book_id, "2", "--note", "a blue kite"
        )
    missing, _, no_page = await storywink_on(
        pipeline.settings, tmp_path, "page", "redraw", book_id, "9"
    )
    long_note, _, too_long = await storywink_on(
        pipeline.settings, tmp_path, "page", "redraw", book_id, "1", "--note", "x" * 501
    )

    assert code == ExitCode.OK, err
    assert out.splitlines() == ["  page  2: OK"]
    assert f"book {book_id}: COMPLETED (2/2 pages illustrated)" in err
    book, pages, _ = pipeline.load(book_id)
    assert book.status is BookStatus.COMPLETED
    assert (pages[1].image_version, pages[1].change_request) == (1, "a blue kite")
    assert missing == ExitCode.REFUSED and f"book {book_id} has no page 9 (it has 2)" in no_page
    assert long_note == ExitCode.BAD_INPUT and "at most 500" in too_long
