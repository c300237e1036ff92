"""Checking a story answer against the book: one usable entry per page, or why not.

Nothing is filled in: a page whose text is missing or unusable makes the answer unusable,
and the reason names the page.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from storywink.book.plain_text import control_character
from storywink.providers.story import StoryAnswer, UnusableAnswer
from storywink.redact import shorten

MAX_SENTENCES: Final = 3
MAX_PAGE_TEXT_CHARS: Final = 600
MAX_NOTES_CHARS: Final = 400
# A run of . ! ? … and any closing quotes or brackets, before a space or the end.
_SENTENCE_END = re.compile("[.!?\u2026]+[\"'\u201d\u2019)\\]]*(?=\\s|$)")


@dataclass(frozen=True)
class PageText:
    page_number: int
    text: str
    illustration_notes: str | None


def count_sentences(text: str) -> int:
    """Sentences in `text`: runs ending in . ! ? or …, plus an unterminated tail."""
    pieces = [piece for piece in _SENTENCE_END.split(text) if re.search(r"\w", piece)]
    return len(pieces)


def clean_text(value: str) -> str:
    """Whitespace runs (newlines, tabs) collapsed to one space, none at the ends."""
    return " ".join(value.split())


def check_answer(
    answer: StoryAnswer, *, title: str, page_numbers: list[int], title_page: int | None
) -> list[PageText]:
    """The page texts in page order; `UnusableAnswer` naming every problem otherwise.
    The title page's text is the book's title, whatever the model wrote there."""
    by_number: dict[int, list[int]] = {}
    for index, entry in enumerate(answer.pages):
        by_number.setdefault(entry.page_number, []).append(index)
    problems: list[str] = []
    page_problems: dict[int, str] = {}
    unknown = sorted(set(by_number) - set(page_numbers))
    if unknown:
        problems.append(f"pages not in the book: {', '.join(map(str, unknown))}")
    texts: list[PageText] = []
    for number in page_numbers:
        found = by_number.get(number, [])
        if len(found) != 1:
            page_problems[number] = "missing" if not found else f"{len(found)} entries"
            continue
        entry = answer.pages[found[0]]
        notes = clean_text(entry.illustration_notes) or None
        if notes is not None and len(notes) > MAX_NOTES_CHARS:
            page_problems[number] = f"illustration notes longer than {MAX_NOTES_CHARS} characters"
            continue
        if number == title_page:
            texts.append(PageText(number, title, notes))
            continue
        text = clean_text(entry.text)
        problem = _text_problem(text)
        if problem:
            page_problems[number] = problem
            continue
        texts.append(PageText(number, text, notes))
    problems += [f"page {number}: {problem}" for number, problem in sorted(page_problems.items())]
    if problems:
        raise UnusableAnswer(shorten("unusable story: " + "; ".join(problems), 400), page_problems)
    return texts


def page_text_problem(text: str, *, is_title_page: bool) -> str | None:
    """Why a page's text (already `clean_text`ed) is refused, or None: the same rule for a
    story file, a parent's edit and the text model (the title page may hold more
    sentences)."""
    if not text:
        return "no text"
    if len(text) > MAX_PAGE_TEXT_CHARS:
        return f"text longer than {MAX_PAGE_TEXT_CHARS} characters"
    if control := control_character(text):
        return f"text holds a control character ({control})"
    sentences = count_sentences(text)
    if not is_title_page and sentences > MAX_SENTENCES:
        return f"{sentences} sentences (a page holds at most {MAX_SENTENCES} sentences)"
    return None


def _text_problem(text: str) -> str | None:
    return page_text_problem(text, is_title_page=False)
