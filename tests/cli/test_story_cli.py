"""`storywink story` and `storywink page set-text` as real subprocesses, with a worker in
this process writing stories offline (no API key)."""

from __future__ import annotations

from pathlib import Path

import pytest

from storywink.cli import ExitCode
from tests.support.commands import storywink_on as storywink
from tests.support.pipeline import Pipeline

pytestmark = pytest.mark.process


async def test_story_prints_the_text_and_a_page_can_be_edited_before_illustration(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    book_id = pipeline.draft(3, photos="p", title="Mia at the Sea")
    async with pipeline.worker():
        code, out, err = await storywink(pipeline.settings, tmp_path, "story", book_id)
        again, _, refused = await storywink(pipeline.settings, tmp_path, "story", book_id)
    edited, _, _ = await storywink(
        pipeline.settings, tmp_path, "page", "set-text", book_id, "2", "Hi!"
    )
    too_long, _, why = await storywink(
        pipeline.settings, tmp_path, "page", "set-text", book_id, "2", "A. B. C. D."
    )

    assert code == ExitCode.OK, err
    assert f"book {book_id}: STORY_READY (3 pages)" in err
    lines = out.splitlines()
    assert lines[0] == " 1. Mia at the Sea"
    assert len(lines) == 3 and all("Mia" in line for line in lines)
    assert again == ExitCode.REFUSED and "is STORY_READY" in refused
    assert edited == ExitCode.OK
    assert too_long == ExitCode.REFUSED and "at most 3 sentences" in why
    _, pages, _ = pipeline.load(book_id)
    assert pages[1].text == "Hi!"
