"""Every failure of the `storywink` command a person can act on is one line and exit 2.

The CLI runs in a process of its own (forked from one that imported it: support.forked_cli)
with each bad setting or bad input; the line must name the problem, hold no secret, and
come without a traceback.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from temporalio.testing import WorkflowEnvironment

from storywink.book.inputs import CHILD_NAME_MAX, TITLE_MAX, USER_ID_MAX, NewBook
from storywink.book.upload import create_book_from_photos
from storywink.cli import ExitCode
from storywink.config import load_settings
from storywink.db.connection import Database, open_database
from storywink.db.engine import make_engine
from storywink.db.models import Book
from storywink.demo.sample_book import write_sample_photos
from storywink.providers.base import GeneratedImage, StoredImage, TransientError
from storywink.providers.local_storage import LocalImageStore
from tests.support import forked_cli
from tests.support.commands import book_count, cli_env, create, ensure_database
from tests.support.fakes.cloudinary_server import CloudFault, FakeCloudinaryServer
from tests.support.helpers import create_book, load_book, photo_urls
from tests.support.services import PG_ADMIN_URL

DB_PASSWORD = "pg-Secret-Canary-93817"
CDN_SECRET = "cdn-Secret-Canary-55120"


def run_with(tmp_path: Path, env: dict[str, str], *args: str) -> tuple[int, list[str], str]:
    """(exit code, stderr lines, stdout) of `storywink ARGS` with `env` on top."""
    result = forked_cli.run(args, cwd=tmp_path, env={**cli_env(tmp_path), **env})
    return result.returncode, result.stderr.splitlines(), result.stdout


def assert_one_error_line(code: int, lines: list[str], *, naming: str) -> str:
    assert code == ExitCode.BAD_INPUT, lines
    assert len(lines) == 1, lines
    [line] = lines
    assert line.startswith("error: ")
    assert naming in line, line
    for secret in (DB_PASSWORD, CDN_SECRET):
        assert secret not in line
    return line


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    write_sample_photos(tmp_path / "photos", 3)
    return tmp_path / "photos"


def no_originals_stored(tmp_path: Path) -> bool:
    storage = tmp_path / "storage"
    return not storage.exists() or not any(p.is_file() for p in storage.rglob("*"))


# ----- the database -----

UNREACHABLE_PG = f"postgresql+psycopg://postgres:{DB_PASSWORD}@127.0.0.1:1/storywink"


@pytest.mark.parametrize(
    ("bad_url", "naming"),
    [
        (f"postgresql+psycopg://postgres:{DB_PASSWORD}@127.0.0.1:notaport/x", "DATABASE_URL"),
        (f"nosuchdialect://u:{DB_PASSWORD}@localhost/x", "DATABASE_URL"),
        (f"mysql://u:{DB_PASSWORD}@localhost/x", "MySQLdb"),  # driver not installed
        (UNREACHABLE_PG, "127.0.0.1"),
    ],
    ids=["malformed", "unknown-dialect", "driver-missing", "unreachable"],
)
@pytest.mark.parametrize(
    "command",
    [["status", "some-book"], ["db", "upgrade"], ["book", "create"], ["books"]],
    ids=["status", "db-upgrade", "book-create", "books"],
)
def test_a_bad_or_unreachable_database_is_one_line_and_exit_2(
    tmp_path: Path, photos: Path, bad_url: str, naming: str, command: list[str]
) -> None:
    if command == ["book", "create"]:
        command = [*command, "--photos", "photos", "--title", "T", "--child-name", "Mia"]

    code, lines, stdout = run_with(
        tmp_path, {"DATABASE_URL": bad_url, "TEMPORAL_ADDRESS": "127.0.0.1:1"}, *command
    )

    assert_one_error_line(code, lines, naming=naming)
    assert stdout == ""
    assert no_originals_stored(tmp_path)


def test_a_database_that_does_not_exist_is_named(tmp_path: Path) -> None:
    url = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    missing = f"{url}/storywink_missing_{uuid.uuid4().hex[:8]}"
    engine = make_engine(PG_ADMIN_URL.replace("postgresql://", "postgresql+psycopg://"))
    try:
        engine.connect().close()
    except Exception as exc:
        pytest.skip(f"PostgreSQL not reachable: {type(exc).__name__}")
    finally:
        engine.dispose()

    upgrade = run_with(tmp_path, {"DATABASE_URL": missing}, "db", "upgrade")
    status = run_with(tmp_path, {"DATABASE_URL": missing}, "status", "some-book")

    assert_one_error_line(upgrade[0], upgrade[1], naming="does not exist")
    assert_one_error_line(status[0], status[1], naming=missing.rsplit("/", 1)[1])


# ----- settings -----


def test_invalid_settings_are_one_line_and_exit_2(tmp_path: Path) -> None:
    code, lines, _ = run_with(tmp_path, {"METRICS_PORT": "not-a-port"}, "status", "some-book")

    assert_one_error_line(code, lines, naming="METRICS_PORT")


def test_an_invalid_log_level_is_one_line_and_exit_2(tmp_path: Path) -> None:
    code, lines, _ = run_with(tmp_path, {"LOG_LEVEL": "LOUDEST"}, "status", "some-book")

    assert_one_error_line(code, lines, naming="LOG_LEVEL")


async def test_a_namespace_that_does_not_exist_is_one_line_and_exit_2(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    database = f"sqlite:///{tmp_path / 'storywink.db'}"
    opened = open_database(load_settings(database_url=database), create=True)
    book_id = create_book(opened, photo_urls(tmp_path / "storage" / "p", 1))
    opened.engine.dispose()
    env = {
        "DATABASE_URL": database,
        "TEMPORAL_ADDRESS": temporal_env.client.service_client.config.target_host,
        "TEMPORAL_NAMESPACE": "no-such-namespace",
    }

    code, lines, _ = await asyncio.to_thread(run_with, tmp_path, env, "illustrate", book_id)

    line = assert_one_error_line(code, [ln for ln in lines if ln.startswith("error")], naming="")
    assert "no-such-namespace" in line
    assert not any("Traceback" in ln for ln in lines)


# ----- book create: the photos, the story, the fields -----


@pytest.mark.parametrize(
    ("case", "naming"),
    [
        ("heic", "04.heic: not a supported photo"),
        ("notes", "notes.txt: not a supported photo"),
        ("directory", "04.jpg: not a regular file"),
        ("broken-link", "04.jpg: a broken link"),
        ("too-large", "02.jpg: "),
    ],
)
def test_photos_the_pipeline_would_drop_or_fail_are_refused_naming_the_file(
    tmp_path: Path, photos: Path, case: str, naming: str
) -> None:
    env: dict[str, str] = {}
    if case == "heic":
        (photos / "04.heic").write_bytes(b"\x00\x00\x00\x18ftypheic" + b"\x00" * 64)
    elif case == "notes":
        (photos / "notes.txt").write_text("remember the park")
    elif case == "directory":
        (photos / "04.jpg").mkdir()
    elif case == "broken-link":
        (photos / "04.jpg").symlink_to(tmp_path / "gone.jpg")
    elif case == "too-large":
        sizes = sorted(p.stat().st_size for p in photos.iterdir())
        env["MAX_FETCH_BYTES"] = str(sizes[0])  # only the smallest photo fits
        naming = next(p.name for p in sorted(photos.iterdir()) if p.stat().st_size > sizes[0])

    code, lines, stdout = run_with(tmp_path, env, "book", "create", "--photos", "photos",
                                   "--title", "T", "--child-name", "Mia")  # fmt: skip

    line = assert_one_error_line(code, lines, naming=naming)
    if case == "too-large":
        assert "MAX_FETCH_BYTES" in line
    assert stdout == ""
    assert book_count(tmp_path) == 0
    assert no_originals_stored(tmp_path)


@pytest.mark.parametrize(
    "content",
    [b'{"pages": "one string"}', b'{"pages": []}', b'{"pages": ["a", 2, "c"]}', b"\xff\xfe"],
    ids=["not-a-list", "empty", "not-text", "not-utf8"],
)
def test_an_invalid_story_file_is_refused_naming_it(
    tmp_path: Path, photos: Path, content: bytes
) -> None:
    (tmp_path / "story.json").write_bytes(content)

    result = create(tmp_path, "--story", "story.json")

    assert_one_error_line(result.returncode, result.stderr.splitlines(), naming="story.json")
    assert book_count(tmp_path) == 0


@pytest.mark.parametrize(
    ("option", "value", "naming"),
    [
        ("--title", "   ", "title"),
        ("--title", "x" * (TITLE_MAX + 1), "title"),
        ("--child-name", "", "child_name"),
        ("--child-name", "y" * (CHILD_NAME_MAX + 1), "child_name"),
        ("--user", "u" * (USER_ID_MAX + 1), "user_id"),
        ("--style", "cubism", "unknown style 'cubism'"),
    ],
    ids=["blank-title", "long-title", "empty-name", "long-name", "long-user", "style"],
)
def test_fields_that_do_not_fit_the_schema_are_refused_before_any_upload(
    tmp_path: Path, photos: Path, option: str, value: str, naming: str
) -> None:
    args = {"--title": "T", "--child-name": "Mia", option: value}
    flat = [part for pair in args.items() for part in pair]

    code, lines, _ = run_with(tmp_path, {}, "book", "create", "--photos", "photos", *flat)

    assert_one_error_line(code, lines, naming=naming)
    assert book_count(tmp_path) == 0
    assert no_originals_stored(tmp_path)


def test_the_limits_are_the_columns_own() -> None:
    assert (TITLE_MAX, CHILD_NAME_MAX, USER_ID_MAX) == (200, 100, 64)
    book = NewBook.checked(title="  Mia's Day ", child_name="Mia", art_style="vignette")
    assert (book.title, book.user_id) == ("Mia's Day", "cli")


@pytest.mark.each_database  # PostgreSQL enforces lengths
def test_the_longest_fields_fit_the_database(
    tmp_path: Path, photos: Path, database_url: str, database: Database
) -> None:
    title, name, user = "t" * TITLE_MAX, "n" * CHILD_NAME_MAX, "u" * USER_ID_MAX

    code, lines, stdout = run_with(
        tmp_path,
        {"DATABASE_URL": database_url},
        "book", "create", "--photos", "photos", "--title", title, "--child-name", name,
        "--user", user,
    )  # fmt: skip

    assert code == 0, lines
    book, pages, _ = load_book(database, stdout.strip())
    assert (book.title, book.child_name, book.user_id, len(pages)) == (title, name, user, 3)


# ----- book create: the CDN fails, and what was uploaded goes -----


@pytest.fixture
def cdn() -> Iterator[FakeCloudinaryServer]:
    with FakeCloudinaryServer(api_secret=CDN_SECRET) as server:
        yield server


@pytest.mark.parametrize(
    ("fault", "naming"),
    [(CloudFault.unauthorized(), "unauthorized"), (CloudFault.server_error(503), "server error")],
    ids=["401", "503"],
)
def test_the_cdn_refusing_an_upload_is_one_line_and_no_book(
    tmp_path: Path, photos: Path, cdn: FakeCloudinaryServer, fault: CloudFault, naming: str
) -> None:
    cdn.fail_next_uploads(10, fault)
    env = {"STORAGE": "cloudinary", "CLOUDINARY_URL": cdn.cloudinary_url()}
    ensure_database(tmp_path)

    result = run_with(tmp_path, env, "book", "create", "--photos", "photos",
                      "--title", "T", "--child-name", "Mia")  # fmt: skip

    line = assert_one_error_line(result[0], result[1], naming=naming)
    assert line.startswith("error: image store: ")
    assert book_count(tmp_path) == 0
    assert cdn.upload_attempts >= 1
    assert [u for u in cdn.uploads if cdn.asset(u.public_id)] == []


class FailsOnUpload(LocalImageStore):
    """The real local store, failing the `n`th upload as a CDN outage would."""

    def __init__(self, root: Path, n: int) -> None:
        super().__init__(root)
        self._n = n
        self.calls = 0

    async def store(
        self,
        image: GeneratedImage,
        public_id: str,
        tags: list[str],
        context: dict[str, str],
        *,
        private: bool = True,
    ) -> StoredImage:
        self.calls += 1
        if self.calls == self._n:
            raise TransientError("HTTP 503 Service Unavailable")
        return await super().store(image, public_id, tags, context, private=private)


async def test_a_failed_create_deletes_the_originals_it_uploaded(
    tmp_path: Path, database: Database
) -> None:
    failing = FailsOnUpload(tmp_path / "storage", n=3)
    before = book_count_in(database)

    with pytest.raises(TransientError):
        await create_book_from_photos(
            failing,
            database.sessions,
            NewBook(title="T", child_name="Mia", art_style="vignette"),
            write_sample_photos(tmp_path / "three", 3),
            None,
        )

    assert failing.calls == 3
    assert not any(p.is_file() for p in (tmp_path / "storage").rglob("*"))
    assert book_count_in(database) == before


def book_count_in(database: Database) -> int:
    with database.sessions() as session:
        return session.scalar(select(func.count()).select_from(Book)) or 0
