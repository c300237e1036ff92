"""What a new book may be made of, checked where it enters (CLI, web backend).

The length limits come from the database columns themselves, so they cannot drift from
the schema, and a book that passes here is one the pipeline will not drop or reject:
every photo is a supported, decodable image no larger than the worker will fetch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Final

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

from storywink.book.plain_text import control_character
from storywink.db.models import Book, column_length
from storywink.illustration.styles import STYLES
from storywink.images import NotAnImage, photo_header
from storywink.story.answer import clean_text, page_text_problem

PHOTO_SUFFIXES: Final = frozenset({".jpg", ".jpeg", ".png", ".webp"})


TITLE_MAX: Final = column_length(Book.title)
CHILD_NAME_MAX: Final = column_length(Book.child_name)
ART_STYLE_MAX: Final = column_length(Book.art_style)
USER_ID_MAX: Final = column_length(Book.user_id)


def _text(max_length: int) -> object:
    return StringConstraints(strip_whitespace=True, min_length=1, max_length=max_length)


class BookInputError(ValueError):
    """The new book's input is refused; the message names the field or the file."""


class NewBook(BaseModel):
    """The fields of a new book; surrounding whitespace is dropped."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    title: Annotated[str, _text(TITLE_MAX)]
    child_name: Annotated[str, _text(CHILD_NAME_MAX)]
    art_style: Annotated[str, _text(ART_STYLE_MAX)]
    user_id: Annotated[str, _text(USER_ID_MAX)] = Field(default="cli")

    @field_validator("title", "child_name", "art_style", "user_id")
    @classmethod
    def _printable(cls, value: str) -> str:
        if control := control_character(value):
            raise ValueError(f"holds a control character ({control})")
        return value

    @classmethod
    def checked(cls, **fields: str) -> NewBook:
        """The book, or `BookInputError` naming every bad field in one line."""
        try:
            book = cls.model_validate(fields)
        except ValidationError as exc:
            problems = [
                f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
                for error in exc.errors(include_input=False, include_url=False)
            ]
            raise BookInputError("; ".join(problems)) from None
        if book.art_style not in STYLES:
            raise BookInputError(f"unknown style {book.art_style!r}; known: {', '.join(STYLES)}")
        return book


def photos_in(directory: Path, max_bytes: int) -> list[Path]:
    """The folder's photos in file-name order, each checked; hidden files are ignored.

    Refuses, naming the file: anything that is not a supported photo (e.g. HEIC, notes),
    a directory or broken link named like a photo, a photo over `max_bytes`, one whose
    header is not an image's or gives more pixels than a photo may have
    (`storywink.images`). `create_book_from_photos` then decodes each, before any upload.
    """
    try:
        entries = sorted(p for p in directory.iterdir() if not p.name.startswith("."))
    except OSError as exc:
        raise BookInputError(f"cannot read the photo folder {directory}: {exc.strerror}") from None
    photos = [check_photo(entry, max_bytes) for entry in entries]
    if not photos:
        raise BookInputError(f"no photos ({', '.join(sorted(PHOTO_SUFFIXES))}) in {directory}")
    return photos


def check_photo(path: Path, max_bytes: int) -> Path:
    supported = ", ".join(sorted(PHOTO_SUFFIXES))
    if path.suffix.lower() not in PHOTO_SUFFIXES:
        raise BookInputError(f"{path}: not a supported photo ({supported})")
    if path.is_symlink() and not path.exists():
        raise BookInputError(f"{path}: a broken link, not a photo")
    if not path.is_file():
        raise BookInputError(f"{path}: not a regular file")
    size = path.stat().st_size
    if size > max_bytes:
        raise BookInputError(
            f"{path}: {size} bytes, over the {max_bytes} bytes a worker fetches (MAX_FETCH_BYTES)"
        )
    try:
        photo_header(path)
    except NotAnImage as exc:
        raise BookInputError(f"{path}: {exc}") from None
    except OSError as exc:
        raise BookInputError(f"{path}: cannot be read: {exc.strerror}") from None
    return path


class StoryFile(BaseModel):
    """`{"pages": ["text for photo 1", ...]}`: one text per photo."""

    model_config = ConfigDict(extra="forbid")

    pages: list[str] = Field(min_length=1)


def story_pages(story: Path, photo_count: int) -> list[str]:
    """The story file's page texts, one per photo, or `BookInputError` naming the file."""
    try:
        pages = StoryFile.model_validate_json(story.read_bytes()).pages
    except OSError as exc:
        raise BookInputError(f"{story}: cannot be read: {exc.strerror}") from None
    except ValidationError as exc:
        first = exc.errors(include_input=False, include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        problem = f"{where}: {first['msg']}" if where else first["msg"]
        raise BookInputError(f'{story}: not a story file {{"pages": [...]}} ({problem})') from None
    if len(pages) != photo_count:
        raise BookInputError(f"{story} has {len(pages)} pages of text for {photo_count} photos")
    texts = [clean_text(page) for page in pages]
    for number, text in enumerate(texts, start=1):
        if refused := page_text_problem(text, is_title_page=number == 1):
            raise BookInputError(f"{story}: page {number}: {refused}")
    return texts
