"""Upload attacks on `POST /books`: each refused with the right 4xx, a clear problem, and
nothing left in storage or the database."""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import func, select
from temporalio.testing import WorkflowEnvironment

from storywink.config import Settings
from storywink.db.connection import Database
from storywink.db.models import Book
from storywink.demo.sample_book import sample_photo_bytes
from tests.support.services import test_settings
from tests.support.web_app import WEB_SETTINGS, api_client, running_app

MAX_PHOTO_BYTES = 200_000
USER = "parent-uploader"


def png_header_only(width: int, height: int) -> bytes:
    """A small PNG whose header claims width x height (a decompression bomb's shape)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\x00" * 64)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    )


def noisy_jpeg(side: int) -> bytes:
    out = io.BytesIO()
    Image.effect_noise((side, side), 100).convert("RGB").save(out, "JPEG", quality=95)
    return out.getvalue()


@pytest.fixture
def upload_settings(
    temporal_env: WorkflowEnvironment, database_url: str, tmp_path: Path
) -> Settings:
    return test_settings(
        temporal_env,
        database_url,
        tmp_path,
        **WEB_SETTINGS,
        max_fetch_bytes=MAX_PHOTO_BYTES,
        web_max_photos=4,
        web_max_upload_bytes=600_000,
    )


@pytest.fixture
async def upload_url(upload_settings: Settings) -> AsyncIterator[str]:
    async with running_app(upload_settings) as url:
        yield url


def fields() -> dict[str, str]:
    return {"title": "Attack", "child_name": "Eve"}


def photo(n: int = 1) -> tuple[str, bytes, str]:
    return (f"photo-{n}.jpg", sample_photo_bytes(n), "image/jpeg")


CASES: dict[str, tuple[list[tuple[str, tuple[str, bytes, str]]], int, str]] = {
    "oversize photo": (
        [("photos", photo()), ("photos", ("big.jpg", noisy_jpeg(600), "image/jpeg"))],
        413,
        f"photo 2 (big.jpg) is over {MAX_PHOTO_BYTES} bytes",
    ),
    "too many photos": ([("photos", photo(n)) for n in range(1, 6)], 413, "more than 4 photos"),
    "the whole upload too large": (
        [("photos", ("a.jpg", b"\xff" * 190_000, "image/jpeg")) for _ in range(4)],
        413,
        "over 600000 bytes",
    ),
    "30000 x 30000 PNG": (
        [("photos", ("bomb.png", png_header_only(30_000, 30_000), "image/png"))],
        422,
        "photo 1 (bomb.png): over 64000000 pixels",
    ),
    "10000 x 10000 PNG (under Pillow's own limit)": (
        [("photos", ("big.png", png_header_only(10_000, 10_000), "image/png"))],
        422,
        "photo 1 (big.png): 10000 x 10000 pixels, over the 64000000",
    ),
    "a text file named .jpg": (
        [("photos", ("notes.jpg", b"just some notes\n" * 20, "image/jpeg"))],
        422,
        "photo 1 (notes.jpg): not a decodable image",
    ),
    "a HEIC photo": (
        [("photos", ("IMG_0001.HEIC", b"\x00\x00\x00\x18ftypheic", "image/heic"))],
        415,
        "photo 1 (IMG_0001.HEIC): not a supported photo",
    ),
    "a file name with ../": (
        [("photos", photo()), ("photos", ("../../../etc/passwd.jpg", b"root:x:0:0", "image/jpeg"))],
        422,
        "photo 2 (passwd.jpg): not a decodable image",
    ),
}


def stored_files(settings: Settings) -> list[Path]:
    return [path for path in settings.storage_dir.rglob("*") if path.is_file()]


def book_count(database: Database) -> int:
    with database.sessions() as session:
        return session.scalar(select(func.count()).where(Book.user_id == USER)) or 0


# The app checks the pixel count itself, below Pillow's own warning's limit.
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("case", list(CASES))
async def test_an_upload_attack_is_refused_and_leaves_nothing(
    case: str, database: Database, upload_settings: Settings, upload_url: str, tmp_path: Path
) -> None:
    files, status, detail = CASES[case]
    async with api_client(upload_url, USER) as http:
        answer = await http.post("/books", files=files, data=fields())
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert detail in answer.json()["detail"]
    assert str(tmp_path) not in answer.text  # no server path in the answer
    assert stored_files(upload_settings) == []
    assert book_count(database) == 0
    assert not (tmp_path.parent / "etc").exists()


async def test_bad_fields_and_story_are_refused_before_anything_is_stored(
    database: Database, upload_settings: Settings, upload_url: str
) -> None:
    async with api_client(upload_url, USER) as http:
        answers = {
            "blank title": await http.post(
                "/books", files=[("photos", photo())], data={"title": " ", "child_name": "Eve"}
            ),
            "unknown style": await http.post(
                "/books", files=[("photos", photo())], data={**fields(), "style": "cubist"}
            ),
            "no photos": await http.post("/books", data=fields(), files={"x": ("", b"")}),
            "story of the wrong length": await http.post(
                "/books",
                files=[("photos", photo())],
                data={**fields(), "story": '{"pages": ["One.", "Two."]}'},
            ),
            "not multipart": await http.post("/books", json=fields()),
        }
        good = await http.post("/books", files=[("photos", photo())], data=fields())
    statuses = {name: answer.status_code for name, answer in answers.items()}
    assert statuses == {
        "blank title": 422,
        "unknown style": 422,
        "no photos": 422,
        "story of the wrong length": 422,
        "not multipart": 415,
    }, {name: answer.text for name, answer in answers.items()}
    assert "2 pages of text for 1 photos" in answers["story of the wrong length"].json()["detail"]
    assert good.status_code == 201
    assert book_count(database) == 1
    assert len([p for p in stored_files(upload_settings) if p.suffix == ".png"]) == 1


def test_png_header_helper_really_claims_the_size() -> None:
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(png_header_only(30_000, 30_000)))
    # Below Pillow's error limit (storywink.images raises its warning limit and filters it).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(io.BytesIO(png_header_only(10_000, 10_000))) as image:
            assert image.size == (10_000, 10_000)
