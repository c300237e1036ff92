"""The image prompt for one page: a pure function of the page and its style snapshot.

Required sections are always present; only the free-form parts (page text, notes, and
the book title) are trimmed, so the prompt never exceeds `MAX_PROMPT_CHARS`.
"""

from __future__ import annotations

from typing import Final

from storywink.contract import CHANGE_REQUEST_LIMIT, StyleSnapshot

MAX_PROMPT_CHARS: Final = 4000
# Caps on parts that sit inside required sections, so the required sections alone always
# leave room under MAX_PROMPT_CHARS (style descriptions are a few hundred characters).
MAX_TITLE_CHARS: Final = 200
MAX_DESCRIPTION_CHARS: Final = 1200
ELLIPSIS: Final = "…"

_IMAGES = (
    "You are illustrating one page of a children's picture book. You are given two images. "
    "Image 1 is a photo of the scene to redraw. "
    "Image 2 is a style reference: copy its art style, not its content."
)
_STYLE = "Art style: draw the page in the {label} style. {description}"
_SCENE = (
    "How to interpret the scene: keep the composition of image 1, the same people and "
    "animals, their poses, expressions and the main objects and setting. Redraw everything "
    "in the art style; do not copy photographic textures, lighting noise or camera blur, "
    "and do not add people or objects that are not in the photo."
)
_CONSISTENCY = (
    'Character consistency: this page belongs to the book "{title}". Draw each person with '
    "the same face, hair, skin tone and clothes as in the photo, so the characters look "
    "the same on every page of the book."
)
_NOTES = "Illustration notes: {notes}"
_CHANGE = (
    "Change request: this page was drawn before, and the parent asks for this change. "
    "Keep everything else as the rules above say: {change}"
)
_TITLE_PAGE = (
    'Text: this is the title page. Draw the book title "{title}" prominently, large and '
    "perfectly legible, spelled exactly as given, integrated into the picture. "
    "Do not draw any other words."
)
_STORY_PAGE = (
    "Text: leave a clear, calm area of simple background (for example sky, wall or ground) "
    "where the page text will be printed later. Do not draw any words, letters or numbers."
)
_STORY_TEXT = " The page text, for context only (do not draw it): {text}"


def build_prompt(
    *,
    style: StyleSnapshot,
    is_title_page: bool,
    book_title: str,
    text: str | None,
    illustration_notes: str | None,
    change_request: str | None = None,
) -> str:
    """The prompt for one page; deterministic and at most `MAX_PROMPT_CHARS` long.
    `change_request`: a parent's note for a redraw, a required section when given."""
    title = _trim(_clean(book_title), MAX_TITLE_CHARS) or "Untitled"
    required = [
        _IMAGES,
        _STYLE.format(
            label=_clean(style.label),
            description=_trim(_clean(style.description), MAX_DESCRIPTION_CHARS),
        ),
        _SCENE,
        _CONSISTENCY.format(title=title),
    ]
    change = _trim(_clean(change_request), CHANGE_REQUEST_LIMIT)
    if change:
        required.append(_CHANGE.format(change=change))
    text_part = _TITLE_PAGE.format(title=title) if is_title_page else _STORY_PAGE
    notes = _clean(illustration_notes)
    page_text = "" if is_title_page else _clean(text)

    fixed = _join([*required, _NOTES.format(notes="") if notes else "", text_part])
    fixed += _STORY_TEXT.format(text="") if page_text else ""
    notes, page_text = _fit(notes, page_text, MAX_PROMPT_CHARS - len(fixed))

    if page_text:
        text_part += _STORY_TEXT.format(text=page_text)
    return _join([*required, _NOTES.format(notes=notes) if notes else "", text_part])


def _fit(notes: str, text: str, budget: int) -> tuple[str, str]:
    """Share `budget` characters between notes and text, half each unless one needs less."""
    if len(notes) + len(text) <= budget:
        return notes, text
    half = budget // 2
    if len(notes) <= half:
        return notes, _trim(text, budget - len(notes))
    if len(text) <= half:
        return _trim(notes, budget - len(text)), text
    return _trim(notes, half), _trim(text, budget - half)


def _clean(value: str | None) -> str:
    """Collapse whitespace (newlines included) so user text cannot add prompt sections."""
    return " ".join((value or "").split())


def _trim(value: str, limit: int) -> str:
    """Cut `value` to at most `limit` characters, at a word boundary when one is near."""
    if len(value) <= limit:
        return value
    if limit <= len(ELLIPSIS):
        return ""
    cut = value[: limit - len(ELLIPSIS)]
    space = cut.rfind(" ")
    if space >= len(cut) * 3 // 4:
        cut = cut[:space]
    return cut.rstrip() + ELLIPSIS


def _join(sections: list[str]) -> str:
    return "\n\n".join(section for section in sections if section)
