"""A new book from a multipart upload: limits enforced while the body streams in, each
photo checked by the same checks as `storywink book create`, then stored by the same
code (`book_upload`), which deletes what it stored when anything fails.

Client file names are never used as paths: each photo is spooled to `photo-<n><suffix>`
in a private temporary folder, the suffix only when it is one we support.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from PIL import Image, UnidentifiedImageError
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from storywink.book.inputs import PHOTO_SUFFIXES, BookInputError, check_photo, story_pages
from storywink.web.problems import ApiProblem, BadInput

FIELDS: Final = ("title", "child_name", "style", "story")
STORY_MAX_BYTES: Final = 256 * 1024
# Well above any camera's photo (a 48 MP phone: 8000 x 6000), far below a decompression bomb.
MAX_PHOTO_PIXELS: Final = 64_000_000
_SAFE_SUFFIX: Final = re.compile(r"^\.[A-Za-z0-9]{1,10}$")
_SHOWN_NAME: Final = re.compile(r"[^A-Za-z0-9._ -]")


class TooLarge(ApiProblem):
    def __init__(self, detail: str) -> None:
        super().__init__(413, "Content Too Large", detail)


class UnsupportedPhoto(ApiProblem):
    def __init__(self, detail: str) -> None:
        super().__init__(415, "Unsupported Media Type", detail)


@dataclass(frozen=True)
class UploadLimits:
    max_photos: int
    max_photo_bytes: int
    max_total_bytes: int


@dataclass(frozen=True)
class UploadedBook:
    title: str
    child_name: str
    style: str | None
    photos: list[Path]  # checked, in upload order
    texts: list[str] | None


def shown_name(filename: str | None) -> str:
    """The client's file name as it may appear in a message: no path, no control chars."""
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    return _SHOWN_NAME.sub("_", name)[:80] or "(no name)"


async def _capped(stream: AsyncGenerator[bytes, None], limit: int) -> AsyncGenerator[bytes, None]:
    received = 0
    async for chunk in stream:
        received += len(chunk)
        if received > limit:
            raise TooLarge(f"the upload is over {limit} bytes (WEB_MAX_UPLOAD_BYTES)")
        yield chunk


async def _parse(request: Request, limits: UploadLimits) -> FormData:
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise UnsupportedPhoto("the body must be multipart/form-data (photos and fields)")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limits.max_total_bytes:
        raise TooLarge(f"the upload is over {limits.max_total_bytes} bytes (WEB_MAX_UPLOAD_BYTES)")
    parser = MultiPartParser(
        request.headers,
        _capped(request.stream(), limits.max_total_bytes),
        max_files=limits.max_photos,
        max_fields=len(FIELDS),
        max_part_size=STORY_MAX_BYTES,
    )
    try:
        return await parser.parse()
    except MultiPartException as exc:
        message = str(exc)
        if "Too many files" in message:
            raise TooLarge(f"more than {limits.max_photos} photos (WEB_MAX_PHOTOS)") from None
        if "exceeded maximum size" in message:
            raise TooLarge(f"a field is over {STORY_MAX_BYTES} bytes") from None
        raise BadInput(f"not a valid multipart body: {message}") from None


def _field(form: FormData, name: str) -> str | None:
    value = form.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadInput(f"{name} must be a text field, not a file")
    return value


def _spool(upload: UploadFile, number: int, folder: Path, limits: UploadLimits) -> Path:
    suffix = Path(shown_name(upload.filename)).suffix.lower()
    if not _SAFE_SUFFIX.fullmatch(suffix):
        suffix = ".unknown"
    path = folder / f"photo-{number}{suffix}"
    upload.file.seek(0)
    with path.open("wb") as out:
        shutil.copyfileobj(upload.file, out)
    if path.stat().st_size > limits.max_photo_bytes:
        raise TooLarge(
            f"photo {number} ({shown_name(upload.filename)}) is over "
            f"{limits.max_photo_bytes} bytes (MAX_FETCH_BYTES)"
        )
    if suffix not in PHOTO_SUFFIXES:
        supported = ", ".join(sorted(PHOTO_SUFFIXES))
        raise UnsupportedPhoto(
            f"photo {number} ({shown_name(upload.filename)}): not a supported photo ({supported})"
        )
    try:
        _check_pixels(path)
        return check_photo(path, limits.max_photo_bytes)
    except BookInputError as exc:
        problem = str(exc).removeprefix(f"{path}: ")
        raise BadInput(f"photo {number} ({shown_name(upload.filename)}): {problem}") from None


def _check_pixels(path: Path) -> None:
    """Refuse a decompression bomb from its header, before anything decodes it."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except Image.DecompressionBombError:
        raise BookInputError(f"{path}: over {MAX_PHOTO_PIXELS} pixels") from None
    except (UnidentifiedImageError, OSError, SyntaxError):
        return  # check_photo names what is wrong with it
    if width * height > MAX_PHOTO_PIXELS:
        raise BookInputError(
            f"{path}: {width} x {height} pixels, over the {MAX_PHOTO_PIXELS} a photo may have"
        )


def _story(text: str, folder: Path, photo_count: int) -> list[str]:
    path = folder / "story.json"
    path.write_text(text)
    try:
        return story_pages(path, photo_count)
    except BookInputError as exc:
        raise BadInput(
            "story: " + str(exc).replace(f"{path}: ", "").replace(str(path), "the story")
        ) from None


@asynccontextmanager
async def received_book(request: Request, limits: UploadLimits) -> AsyncIterator[UploadedBook]:
    """The upload, checked, with its photos in a temporary folder removed afterwards."""
    form = await _parse(request, limits)
    folder = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="storywink-upload-"))
    try:
        unknown = sorted({key for key in form if key not in (*FIELDS, "photos")})
        if unknown:
            raise BadInput(f"unknown fields {', '.join(shown_name(k) for k in unknown)}")
        uploads = form.getlist("photos")
        if not uploads:
            raise BadInput("no photos: send them as `photos` file parts")
        if len(uploads) > limits.max_photos:
            raise TooLarge(f"more than {limits.max_photos} photos (WEB_MAX_PHOTOS)")
        photos = []
        for number, upload in enumerate(uploads, start=1):
            if not isinstance(upload, UploadFile):
                raise BadInput(f"photos: part {number} is a text field, not a file")
            photos.append(await asyncio.to_thread(_spool, upload, number, folder, limits))
        story = _field(form, "story")
        texts = (
            await asyncio.to_thread(_story, story, folder, len(photos))
            if story and story.strip()
            else None
        )
        yield UploadedBook(
            title=_field(form, "title") or "",
            child_name=_field(form, "child_name") or "",
            style=_field(form, "style") or None,
            photos=photos,
            texts=texts,
        )
    finally:
        await form.close()
        await asyncio.to_thread(shutil.rmtree, folder, True)
