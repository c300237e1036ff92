"""The story answer checks and the offline writer, without any server."""

from __future__ import annotations

import pytest

from storywink.providers.offline_story import OfflineStoryWriter
from storywink.providers.story import PageStory, StoryAnswer, StoryJob, StoryJobPage, UnusableAnswer
from storywink.story.answer import MAX_PAGE_TEXT_CHARS, check_answer, count_sentences


def _answer(*texts: str) -> StoryAnswer:
    return StoryAnswer(
        title="T",
        pages=[
            PageStory(page_number=n, text=text, illustration_notes=f"notes {n}")
            for n, text in enumerate(texts, start=1)
        ],
    )


@pytest.mark.parametrize(
    ("text", "count"),
    [("One", 1), ("Mia laughed. “Look!” she said.", 3), ("Wait… what? Yes!", 3), ("  ", 0)],
)
def test_sentences_are_counted_with_closing_quotes(text: str, count: int) -> None:
    assert count_sentences(text) == count


def test_a_good_answer_gives_every_page_its_text_and_the_title_page_the_title() -> None:
    texts = check_answer(
        _answer("whatever", "Mia  ran.\nShe won!"),
        title="Mia's Race",
        page_numbers=[1, 2],
        title_page=1,
    )
    assert [(t.page_number, t.text, t.illustration_notes) for t in texts] == [
        (1, "Mia's Race", "notes 1"),
        (2, "Mia ran. She won!", "notes 2"),
    ]


def test_every_problem_is_named_and_no_page_is_filled_in() -> None:
    answer = _answer("T", "", "A. B. C. D.", "x" * (MAX_PAGE_TEXT_CHARS + 1), "Fine.", "Extra.")
    answer.pages[4].page_number = 3  # page 3 twice, page 5 missing, page 6 not in the book
    with pytest.raises(UnusableAnswer) as error:
        check_answer(answer, title="T", page_numbers=[1, 2, 3, 4, 5], title_page=1)
    assert error.value.page_problems == {
        2: "no text",
        3: "2 entries",
        4: f"text longer than {MAX_PAGE_TEXT_CHARS} characters",
        5: "missing",
    }
    assert "pages not in the book: 6" in error.value.reason


async def test_the_offline_writer_is_deterministic_readable_and_passes_the_checks() -> None:
    job = StoryJob(
        title="Leo and the Kite",
        child_name="Leo",
        style_label="Crayon",
        tone="playful",
        pages=tuple(StoryJobPage(n, n == 1, None) for n in range(1, 7)),
    )
    first = await OfflineStoryWriter().write(job)
    assert first == await OfflineStoryWriter().write(job)
    texts = check_answer(first, title=job.title, page_numbers=list(range(1, 7)), title_page=1)
    assert texts[0].text == "Leo and the Kite"
    assert len({t.text for t in texts}) == 6
    assert "Leo" in texts[-1].text and "bed" in texts[-1].text
