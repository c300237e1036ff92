"""Every way the text model can answer ends the story in its outcome, retried only when
that can help: each row is a book, run through the real workflow and worker and the real
google-genai SDK against the fake endpoint; the fake counts the model calls."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

from storywink.contract import BookStatus
from tests.support.fakes.gemini_server import Fault
from tests.support.helpers import keep_history
from tests.support.pipeline import Pipeline
from tests.support.provider_fakes import GEMINI_KEY, Fakes

ATTEMPTS = 3
PAGES = 4


def _story(texts: list[str]) -> str:
    pages = [
        {"page_number": n, "text": text, "illustration_notes": "calm"}
        for n, text in enumerate(texts, start=1)
    ]
    return json.dumps({"title": "T", "pages": pages})


SHORT = _story(["T", "One.", "Two."])  # a page missing
LONG = _story(["T", "One. Two. Three. Four.", "Fine.", "Fine."])
EMPTY = _story(["T", "  ", "Fine.", "Fine."])
CUT = '{"title": "T", "pages": [{"page_number": 1, "te'


@dataclass(frozen=True)
class Row:
    name: str
    faults: tuple[Fault, ...]
    status: BookStatus
    calls: int
    says: str = ""
    problem_pages: tuple[int, ...] = ()


def _recovers(name: str, *faults: Fault) -> Row:
    return Row(name, faults, BookStatus.STORY_READY, len(faults) + 1)


def _fails_at_once(name: str, says: str, fault: Fault) -> Row:
    return Row(name, (fault,), BookStatus.FAILED, 1, says)


def _fails_after_retries(name: str, says: str, fault: Fault, pages: tuple[int, ...] = ()) -> Row:
    return Row(name, (fault,) * ATTEMPTS, BookStatus.FAILED, ATTEMPTS, says, pages)


ROWS = [
    Row("ok", (), BookStatus.STORY_READY, 1),
    _recovers("429 RetryInfo", Fault.rate_limited("1s")),
    _recovers("500 then 503", Fault.http(500), Fault.http(503)),
    _recovers("connection reset", Fault.reset()),
    _recovers("no answer within the model timeout", Fault.hang(30)),
    _recovers("not JSON once", Fault.story("Once upon a time")),
    _recovers("a page missing once", Fault.story(SHORT)),
    _fails_at_once("blockReason", "write: refused: blocked: SAFETY", Fault.blocked("SAFETY")),
    _fails_at_once("finish SAFETY", "write: refused: safety: SAFETY", Fault.finish("SAFETY")),
    _fails_at_once("RECITATION", "refused: copyright: RECITATION", Fault.finish("RECITATION")),
    _fails_at_once("finish OTHER", "refused: no story: OTHER", Fault.finish("OTHER")),
    _fails_at_once("400", "write: HTTP 400 INVALID_ARGUMENT: bad", Fault.http(400, "bad")),
    _fails_at_once("401", "write: HTTP 401 UNAUTHENTICATED", Fault.http(401)),
    _fails_at_once("403", "write: HTTP 403 PERMISSION_DENIED", Fault.http(403)),
    _fails_after_retries("a page missing", "page 4: missing", Fault.story(SHORT), (4,)),
    _fails_after_retries("four sentences", "page 2: 4 sentences", Fault.story(LONG), (2,)),
    _fails_after_retries("empty text", "page 2: no text", Fault.story(EMPTY), (2,)),
    _fails_after_retries("cut off", "cut off: MAX_TOKENS", Fault.story(CUT, "MAX_TOKENS")),
    _fails_after_retries("503 every time", "write: HTTP 503", Fault.http(503)),
]


def _title(index: int) -> str:
    return f"Story row {index:02d}"


async def test_every_text_model_answer_ends_in_its_outcome(
    fake_pipeline: Pipeline, fakes: Fakes
) -> None:
    pipeline = fake_pipeline.with_settings(
        story_retry_attempts=ATTEMPTS,
        story_retry_initial_seconds=0.2,
        story_retry_max_seconds=0.5,
        model_timeout_seconds=1.5,
        story_concurrency=len(ROWS),
    )
    book_ids = []
    for index, row in enumerate(ROWS):
        title = _title(index)
        for fault in row.faults:
            fakes.gemini.fail_when(f'title is "{title}"', fault, times=1)
        book_ids.append(pipeline.draft(PAGES, photos=f"row{index}", title=title))

    async with pipeline.worker():
        handles = [await pipeline.start_story(book_id) for book_id in book_ids]
        outcomes = await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), 120)
    await keep_history(handles[-1], "story_failed_after_retries")  # "503 every time"

    problems = []
    for index, (row, book_id, outcome) in enumerate(zip(ROWS, book_ids, outcomes, strict=True)):
        book, pages, _ = pipeline.load(book_id)
        calls = fakes.gemini.calls_with(f'title is "{_title(index)}"')
        marked = tuple(p.page_number for p in pages if p.text_problem)
        reason = book.story_error or ""
        seen = (book.status, outcome.status, calls, marked)
        wanted = (row.status, row.status, row.calls, row.problem_pages)
        if seen != wanted or row.says not in reason or GEMINI_KEY in reason:
            problems.append(f"{row.name}: {seen} {reason!r}, wanted {wanted} {row.says!r}")
        if row.status is BookStatus.STORY_READY and not all(p.text for p in pages):
            problems.append(f"{row.name}: a page without text")
        if row.status is BookStatus.FAILED and any(p.text for p in pages):
            problems.append(f"{row.name}: text written for a failed story")
    assert not problems, "\n".join(problems)
