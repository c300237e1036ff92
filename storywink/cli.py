"""The `storywink` command: create books, illustrate them, watch them, run the demo.

Every failure a person can act on is one line on stderr, `error: ...`, with an exit code
from `ExitCode`; no traceback, no secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Coroutine, Iterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from enum import IntEnum
from pathlib import Path
from typing import Annotated, Any, Final, NoReturn, Protocol, TypeVar, runtime_checkable
from urllib.parse import urlsplit

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from temporalio.service import RPCError
from typer.exceptions import TyperException

from storywink import book_report, books, pipeline
from storywink.book_input import BookInputError, NewBook, photos_in, story_pages
from storywink.book_report import BooksReport
from storywink.client import IllustrationClient, QueuePollers, RunEnd, RunEnding
from storywink.config import DEFAULT_DATA_DIR, ConfigurationError, Settings, load_settings
from storywink.connections import (
    TemporalUnavailable,
    connect_temporal,
    open_database,
    secrets_of,
)
from storywink.db.engine import (
    DatabaseNotReady,
    driver_complaint,
    in_session,
    make_engine,
    upgrade_to_head,
)
from storywink.db.models import Book, new_id
from storywink.devserver import DevServerError, ensure_dev_server, stop_dev_server, web_ui_url
from storywink.errors import BookError
from storywink.gallery import GalleryPage, write_gallery
from storywink.images import NotAnImage, image_mime_type
from storywink.providers.base import GeneratedImage, ImageStore, PermanentError, TransientError
from storywink.providers.factory import build_providers, build_store
from storywink.providers.local_storage import LocalImageStore
from storywink.redact import redact, shorten
from storywink.sample_book import SAMPLE_CHILD_NAME, SAMPLE_TITLE, sample_story, write_sample_photos
from storywink.shared import BookStatus
from storywink.shared import Progress as RunProgress
from storywink.styles import DEFAULT_STYLE, STYLES

app = typer.Typer(help="Storywink: illustrate children's books on Temporal.", no_args_is_help=True)
book_app = typer.Typer(help="Create books.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
devserver_app = typer.Typer(help="The local Temporal dev server used by the demo.")
app.add_typer(book_app, name="book")
app.add_typer(db_app, name="db")
app.add_typer(devserver_app, name="devserver")
err = Console(stderr=True, soft_wrap=True)
T = TypeVar("T")


class ExitCode(IntEnum):
    """Exit codes of every command (`storywink illustrate` uses them all)."""

    OK = 0  # illustrate: the book is COMPLETED
    REFUSED = 1  # book not found, not ready, busy; the run failed; an unexpected error
    BAD_INPUT = 2  # bad input or configuration; database, Temporal or CDN unreachable
    STUCK = 3  # books: a book is stuck
    PARTIAL = 4  # illustrate: the book is PARTIAL
    FAILED = 5  # illustrate: the book is FAILED
    CANCELLED = 6  # illustrate: the run was cancelled (the book is still settled)
    TERMINATED = 7  # illustrate: the run was terminated or timed out


STUCK_EXIT_CODE: Final = ExitCode.STUCK
BOOK_ID_WIDTH: Final = len(new_id())
ERROR_LINE_LIMIT: Final = 600
# With no progress for this long, `illustrate` checks that workers poll the task queues.
NO_PROGRESS_CHECK_SECONDS: Final = 5.0
_SECRET_ENVIRONMENT: Final = ("DATABASE_URL", "GEMINI_API_KEY", "GOOGLE_API_KEY", "CLOUDINARY_URL")


def _secrets() -> list[str]:
    """Every secret this process may know, from the settings and from the environment."""
    found = []
    with contextlib.suppress(ConfigurationError, ValueError, ArgumentError):
        found.extend(secrets_of(load_settings()))
    # The raw environment too: settings that do not load still hold secrets.
    for value in (os.environ.get(name, "") for name in _SECRET_ENVIRONMENT):
        if "://" not in value:
            found.append(value)  # an API key
            continue
        if value.startswith("cloudinary:"):
            found.append(value)
        with contextlib.suppress(ValueError):
            found.append(urlsplit(value).password or "")  # a database or Cloudinary secret
    return [value for value in found if value]


def _fail(code: ExitCode, message: str) -> NoReturn:
    line = shorten(redact(message, _secrets()), ERROR_LINE_LIMIT)
    err.print(f"[red]error:[/] {escape(line)}", highlight=False)
    raise typer.Exit(code)


def _with_notes(exc: BaseException) -> str:
    return "; ".join([str(exc), *getattr(exc, "__notes__", [])])


@contextlib.contextmanager
def one_line_errors() -> Iterator[None]:
    """Turn every failure of a command into one `error: ...` line and its exit code."""
    try:
        yield
    except (typer.Exit, typer.Abort, TyperException):
        raise
    except (BookInputError, ConfigurationError, DatabaseNotReady, TemporalUnavailable) as exc:
        _fail(ExitCode.BAD_INPUT, _with_notes(exc))
    except SQLAlchemyError as exc:
        name, line = driver_complaint(exc)
        _fail(ExitCode.BAD_INPUT, f"database (DATABASE_URL): {name}: {line}")
    except ImportError as exc:
        _fail(ExitCode.BAD_INPUT, f"a module is missing (the database driver?): {exc}")
    except (PermanentError, TransientError) as exc:
        _fail(ExitCode.BAD_INPUT, f"image store: {_with_notes(exc)}")
    except RPCError as exc:
        namespace = load_settings().temporal_namespace
        _fail(
            ExitCode.BAD_INPUT,
            f"Temporal refused (namespace {namespace}, TEMPORAL_NAMESPACE): {exc.message}",
        )
    except OSError as exc:
        _fail(ExitCode.BAD_INPUT, _with_notes(exc))
    except (BookError, DevServerError) as exc:
        _fail(ExitCode.REFUSED, str(exc))
    except Exception as exc:
        if os.environ.get("STORYWINK_TRACEBACK"):
            raise
        _fail(
            ExitCode.REFUSED,
            f"unexpected {type(exc).__name__}: {exc} (STORYWINK_TRACEBACK=1 shows where)",
        )


def checked_settings() -> Settings:
    """The settings, with DATABASE_URL at least well-formed (its password never shown)."""
    settings = load_settings()
    try:
        make_url(settings.resolved_database_url).port  # noqa: B018 - parsing is the check
    except (ArgumentError, ValueError) as exc:
        problem = str(exc).split(" from string", 1)[0]
        raise ConfigurationError(f"DATABASE_URL is not a database URL: {problem}") from None
    return settings


def _settings() -> Settings:
    with one_line_errors():
        return checked_settings()


def _run(work: Coroutine[Any, Any, T]) -> T:
    with one_line_errors():
        return asyncio.run(work)


@runtime_checkable
class _DeletingStore(Protocol):
    async def delete(self, public_id: str) -> None: ...


async def _discard_originals(store: ImageStore, public_ids: list[str]) -> list[str]:
    """Delete what a failed `book create` uploaded; the ids it could not delete."""
    if isinstance(store, LocalImageStore):
        for public_id in public_ids:
            path = store.path_for(public_id)
            for leftover in (path, path.with_name(path.name + ".json")):
                leftover.unlink(missing_ok=True)
        return []
    if isinstance(store, _DeletingStore):
        for public_id in public_ids:
            await store.delete(public_id)
        return []
    return public_ids


async def create_book_from_photos(
    store: ImageStore,
    sessions: sessionmaker[Session],
    book: NewBook,
    photos: list[Path],
    texts: list[str] | None,
) -> str:
    """Upload the originals, then write the book; on any failure the uploads are deleted."""
    book_id = new_id()
    uploaded: list[str] = []
    try:
        urls = []
        for number, photo in enumerate(photos, start=1):
            data = await asyncio.to_thread(photo.read_bytes)
            try:
                mime = image_mime_type(data)
            except NotAnImage as exc:
                raise BookInputError(f"{photo}: {exc}") from None
            public_id = f"storywink/{book_id}/originals/page_{number}"
            uploaded.append(public_id)  # before the call: a timed-out upload may have landed
            stored = await store.store(
                GeneratedImage(data, mime),
                public_id,
                tags=[f"book_{book_id}", "original"],
                context={},
            )
            urls.append(stored.url)
        new_pages = [
            books.NewPage(url, text=texts[i] if texts else None) for i, url in enumerate(urls)
        ]
        created = await in_session(
            sessions,
            books.create_book,
            book_id=book_id,
            user_id=book.user_id,
            title=book.title,
            child_name=book.child_name,
            art_style=book.art_style,
            pages=new_pages,
            status=BookStatus.STORY_READY if texts else BookStatus.DRAFT,
        )
    except BaseException as exc:
        left = await _discard_originals(store, uploaded)
        if left:
            exc.add_note(
                f"up to {len(left)} originals uploaded to the {store.name} store remain "
                f"under storywink/{book_id}/originals (it cannot delete them)"
            )
        raise
    return created.id


@book_app.command("create")
def book_create(
    photos: Annotated[Path, typer.Option(exists=True, file_okay=False, help="Folder of photos")],
    title: Annotated[str, typer.Option(help="Book title")],
    child_name: Annotated[str, typer.Option(help="The child's name")],
    style: Annotated[str, typer.Option(help=f"Art style: {', '.join(STYLES)}")] = DEFAULT_STYLE,
    story: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help='JSON {"pages": [...]}')
    ] = None,
    user: Annotated[str, typer.Option(help="The owner's user id")] = "cli",
) -> None:
    """Create a book from a folder of photos (file-name order; the first is the title page).
    Prints only the new book id."""
    with one_line_errors():
        new_book = NewBook.checked(
            title=title, child_name=child_name, art_style=style, user_id=user
        )
        settings = checked_settings()
        photo_files = photos_in(photos, settings.max_fetch_bytes)
        texts = story_pages(story, len(photo_files)) if story else None
        database = open_database(settings)
        book_id = asyncio.run(
            create_book_from_photos(
                build_store(settings), database.sessions, new_book, photo_files, texts
            )
        )
    print(book_id)


def _pollers_line(queue: QueuePollers) -> str:
    seen = ""
    if queue.listed and queue.last_seen:
        ago = book_report.format_age(queue.last_seen, datetime.now(UTC))
        seen = f"; {queue.listed} last seen {ago} ago"
    return (
        f"no worker is polling {queue.kind} task queue {queue.task_queue} "
        f"({queue.live} pollers{seen}); start one with: python worker.py"
    )


class _NoWorkerWatch:
    """Says once per queue when nothing moves and no worker polls it."""

    def __init__(self, client: IllustrationClient, console: Console) -> None:
        self._client = client
        self._console = console
        self._last: tuple[str, int] | None = None
        self._quiet_since = time.monotonic()
        self._warned: set[str] = set()

    async def check(self, progress: RunProgress) -> None:
        now = time.monotonic()
        if (progress.phase, progress.done) != self._last:
            self._last = (progress.phase, progress.done)
            self._quiet_since = now
            return
        if now - self._quiet_since < NO_PROGRESS_CHECK_SECONDS:
            return
        self._quiet_since = now  # check again after as long
        for queue in await self._client.task_queue_pollers():
            if queue.live == 0 and queue.task_queue not in self._warned:
                self._warned.add(queue.task_queue)
                self._console.print(_pollers_line(queue), highlight=False)


async def _watch(client: IllustrationClient, book_id: str, priority: int | None = None) -> RunEnd:
    run = await client.start_illustration(book_id, priority)
    err.print(f"illustrating book {book_id} (workflow {run.workflow_id})")
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=err,
    ) as bar:
        task = bar.add_task("pages", total=None, detail="")
        watch = _NoWorkerWatch(client, err)
        ending = asyncio.ensure_future(client.wait_for_end(book_id))
        while not ending.done():
            progress = await client.progress(book_id)
            bar.update(
                task,
                total=progress.to_draw or None,
                completed=progress.done,
                description=progress.phase,
                detail=f"{progress.flagged} flagged, {progress.failed} failed",
            )
            await watch.check(progress)
            await asyncio.wait([ending], timeout=0.5)
        end = ending.result()
        book = end.book
        bar.update(
            task,
            total=book.pages_total,
            completed=book.pages_with_image + book.pages_flagged + book.pages_failed,
            description=book.status.value,
            detail=f"{book.pages_flagged} flagged, {book.pages_failed} failed",
        )
        return end


_EXIT_FOR_STATUS: Final = {
    BookStatus.COMPLETED: ExitCode.OK,
    BookStatus.PARTIAL: ExitCode.PARTIAL,
    BookStatus.FAILED: ExitCode.FAILED,
}
_EXIT_FOR_ENDING: Final = {
    RunEnding.CANCELLED: ExitCode.CANCELLED,
    RunEnding.TERMINATED: ExitCode.TERMINATED,
    RunEnding.TIMED_OUT: ExitCode.TERMINATED,
    RunEnding.FAILED: ExitCode.REFUSED,
}


def exit_code_for(end: RunEnd) -> ExitCode:
    if end.ending in (RunEnding.COMPLETED, RunEnding.ALREADY_SETTLED):
        return _EXIT_FOR_STATUS.get(end.book.status, ExitCode.REFUSED)
    return _EXIT_FOR_ENDING[end.ending]


def ending_line(end: RunEnd) -> str:
    """`book X: PARTIAL (4/6 pages illustrated, 1 flagged, 1 failed)` and the like."""
    book = end.book
    pages = f"{book.pages_with_image}/{book.pages_total} pages illustrated"
    if book.pages_flagged or book.pages_failed:
        pages += f", {book.pages_flagged} flagged, {book.pages_failed} failed"
    if end.ending in (RunEnding.COMPLETED, RunEnding.ALREADY_SETTLED):
        return f"book {end.book_id}: {book.status.value} ({pages})"
    reason = f": {shorten(end.reason, 200)}" if end.reason else ""
    if book.status is not BookStatus.ILLUSTRATING:
        after = f"book is {book.status.value}: {pages}"
    else:
        after = (
            f"book is still {book.status.value}: {pages}; "
            f"`storywink illustrate {end.book_id}` starts a run that takes it over"
        )
    what = "run failed" if end.ending is RunEnding.FAILED else end.ending.value
    return f"book {end.book_id}: {what}{reason} ({after})"


@app.command()
def illustrate(
    book_id: str,
    priority: Annotated[
        int | None,
        typer.Option(min=1, max=5, help="1 (its pages first, e.g. a reprint) to 5; default 3"),
    ] = None,
) -> None:
    """Start (or join) a book's illustration and show progress until it settles.

    Exit codes: 0 COMPLETED, 4 PARTIAL, 5 FAILED, 6 cancelled, 7 terminated or timed out,
    1 refused (not found, not ready, busy) or the run failed, 2 bad configuration."""
    settings = _settings()

    async def go() -> RunEnd:
        client = await IllustrationClient.connect(settings)
        return await _watch(client, book_id, priority)

    end = _run(go())
    err.print(escape(ending_line(end)), highlight=False)
    raise typer.Exit(exit_code_for(end))


def _book_json(book: Book) -> dict[str, Any]:
    return {
        "id": book.id,
        "title": book.title,
        "child_name": book.child_name,
        "status": book.status.value,
        "art_style": book.art_style,
        "pages": [
            {
                "page_number": p.page_number,
                "is_title_page": p.is_title_page,
                "text": p.text,
                "moderation_status": p.moderation_status.value,
                "moderation_reason": p.moderation_reason,
                "generated_image_url": p.generated_image_url,
            }
            for p in book.pages
        ],
    }


@app.command()
def status(book_id: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Show a book and its pages."""
    settings = _settings()
    with one_line_errors():
        database = open_database(settings)
        with database.sessions() as session:
            book = _book_json(books.get_book(session, book_id))
    if as_json:
        print(json.dumps(book, indent=2))
        return
    print(f"{book['title']} ({book['id']}): {book['status']}, style {book['art_style']}")
    for page in book["pages"]:
        reason = f" — {page['moderation_reason']}" if page["moderation_reason"] else ""
        print(f"  page {page['page_number']:>2}: {page['moderation_status']}{reason}")


_STATUS_COLOURS = {
    BookStatus.COMPLETED: "green",
    BookStatus.PARTIAL: "yellow",
    BookStatus.FAILED: "red",
}


def _add_id_and_title_columns(table: Table) -> None:
    """Ids are never cut, whatever the terminal's width: the title gives way instead."""
    table.add_column("book", no_wrap=True, min_width=BOOK_ID_WIDTH)
    table.add_column("title", overflow="ellipsis", no_wrap=True, ratio=1, min_width=5)


def _print_books_report(report: BooksReport) -> None:
    out = Console()
    if report.in_progress:
        table = Table(title="In progress", title_justify="left")
        _add_id_and_title_columns(table)
        for column in ("status", "pages", "started", "updated", "state"):
            table.add_column(column)
        for book in report.in_progress:
            pages = f"{book.pages.settled}/{book.pages.total}"
            if book.pages.flagged or book.pages.failed:
                pages += f" ({book.pages.flagged} flagged, {book.pages.failed} failed)"
            run = book.run
            state = run.summary if run else "-"
            table.add_row(
                book.book_id,
                escape(book.title),
                book.status.value,
                pages,
                report.ago(run.started_at if run else None),
                report.ago(book.updated_at),
                f"[red]STUCK: {state}[/]" if book.stuck else f"[green]{state}[/]",
            )
        out.print(table)
    else:
        out.print("No book is in progress.")
    stuck = [(book, book.run) for book in report.in_progress if book.run and book.run.stuck]
    if stuck:
        out.print(f"\n[bold red]{len(stuck)} stuck[/]: no running workflow holds them.")
        for book, run in stuck:
            held_by = f"workflow {book.workflow_id}, run {book.run_id}" if book.run_id else ""
            why = f"{run.summary}: {run.reason}" if run.reason else run.summary
            out.print(f"  {book.book_id} ({escape(book.title)}): {escape(why)}")
            if held_by:
                out.print(f"    held by {held_by}")
            out.print(f"    {escape(run.hint or '')}")
    out.print()
    outcomes = Table(title="Recent outcomes", title_justify="left")
    _add_id_and_title_columns(outcomes)
    for column in ("status", "ok", "flagged", "failed", "pages", "updated"):
        outcomes.add_column(
            column, justify="right" if column in ("ok", "flagged", "failed", "pages") else "left"
        )
    for outcome in report.recent:
        colour = _STATUS_COLOURS.get(outcome.status, "default")
        outcomes.add_row(
            outcome.book_id,
            escape(outcome.title),
            f"[{colour}]{outcome.status.value}[/]",
            str(outcome.pages.ok),
            str(outcome.pages.flagged),
            str(outcome.pages.failed),
            str(outcome.pages.total),
            report.ago(outcome.updated_at),
        )
    out.print(outcomes if report.recent else "No book has settled yet.")


@app.command("books")
def books_overview(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for machines.")] = False,
    recent: Annotated[
        int, typer.Option(min=0, max=1000, help="How many recently settled books to list.")
    ] = book_report.DEFAULT_RECENT,
) -> None:
    """Books in progress, recent outcomes, and books stuck without a running workflow.

    Exits with 3 when a book is stuck, so monitoring can run it."""
    settings = _settings()

    async def go() -> BooksReport:
        database = await asyncio.to_thread(open_database, settings)
        temporal = await connect_temporal(settings)
        return await book_report.build_report(
            temporal, database.sessions, settings.temporal_task_queue, recent=recent
        )

    report = _run(go())
    if as_json:
        print(report.model_dump_json(indent=2))
    else:
        _print_books_report(report)
    if report.stuck:
        raise typer.Exit(STUCK_EXIT_CODE)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Bring the database (DATABASE_URL) to the latest migration."""
    settings = _settings()
    with one_line_errors():
        upgrade_to_head(make_engine(settings.resolved_database_url))
    err.print("database is at the latest migration")


@devserver_app.command("stop")
def devserver_stop() -> None:
    """Stop the dev server `storywink demo` started."""
    err.print("stopped" if stop_dev_server() else "no dev server started by storywink is running")


async def _demo(settings: Settings, pages: int, out_dir: Path) -> tuple[str, str, Path]:
    from worker import build_workers  # the same wiring `python worker.py` runs

    database = open_database(settings)
    photos = write_sample_photos(out_dir / "photos", pages)
    book_id = await create_book_from_photos(
        build_store(settings),
        database.sessions,
        NewBook(title=SAMPLE_TITLE, child_name=SAMPLE_CHILD_NAME, art_style=DEFAULT_STYLE),
        photos,
        sample_story(pages),
    )
    temporal = await connect_temporal(settings)
    providers = build_providers(settings)
    async with AsyncExitStack() as stack:
        for worker in build_workers(temporal, settings, database, providers):
            await stack.enter_async_context(worker)
        client = IllustrationClient(
            temporal,
            database.sessions,
            settings.temporal_task_queue,
            settings.temporal_illustration_task_queue,
        )
        end = await _watch(client, book_id)
    await providers.aclose()
    with database.sessions() as session:
        book = books.get_book(session, book_id)
        gallery = write_gallery(
            out_dir / f"book-{book_id}.html",
            title=book.title,
            status=end.book.status.value,
            pages=[
                GalleryPage(
                    page_number=p.page_number,
                    text=p.text,
                    original_image_url=p.original_image_url,
                    generated_image_url=p.generated_image_url,
                    moderation_status=p.moderation_status.value,
                    moderation_reason=p.moderation_reason,
                )
                for p in book.pages
            ],
        )
    return book_id, end.book.status.value, gallery


@app.command()
def demo(pages: Annotated[int, typer.Option(min=1, max=30)] = 6) -> None:
    """Illustrate a sample book on the embedded defaults and show where to look."""
    settings = _settings()
    started = _run(asyncio.to_thread(ensure_dev_server, settings.temporal_address))
    if started:
        err.print(f"started a Temporal dev server at {settings.temporal_address}")
    book_id, outcome_status, gallery = _run(_demo(settings, pages, DEFAULT_DATA_DIR / "demo"))
    workflow_id = pipeline.workflow_id_for(book_id)
    err.print(f"\nThe book is {outcome_status}.")
    err.print(f"The book:        {gallery.resolve().as_uri()}")
    err.print(f"Pictures:        {settings.storage_dir.resolve() / 'storywink' / book_id}")
    if ui := web_ui_url(settings, started=started):
        namespace = settings.temporal_namespace
        err.print(f"Temporal Web UI: {ui}/namespaces/{namespace}/workflows/{workflow_id}")
    else:
        err.print("Temporal Web UI: address unknown (set TEMPORAL_UI_URL)")
    err.print(f"Status:          storywink status {book_id}")
    if started:
        err.print("Stop the dev server with: storywink devserver stop")
