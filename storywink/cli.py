"""The `storywink` command: create books, illustrate them, watch them, run the demo."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import BaseModel, Field, ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from storywink import book_report, books, pipeline
from storywink.book_report import BooksReport
from storywink.client import IllustrationClient
from storywink.config import DEFAULT_DATA_DIR, ConfigurationError, Settings, load_settings
from storywink.connections import Database, TemporalUnavailable, connect_temporal, open_database
from storywink.db.engine import DatabaseNotReady, in_session, make_engine, upgrade_to_head
from storywink.db.models import Book, new_id
from storywink.devserver import DevServerError, ensure_dev_server, stop_dev_server, web_ui_url
from storywink.errors import BookError
from storywink.gallery import GalleryPage, write_gallery
from storywink.images import NotAnImage, image_mime_type
from storywink.providers.base import GeneratedImage, ImageStore
from storywink.providers.factory import build_providers, build_store
from storywink.sample_book import SAMPLE_CHILD_NAME, SAMPLE_TITLE, sample_story, write_sample_photos
from storywink.shared import BookOutcome, BookStatus
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
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
STUCK_EXIT_CODE = 3


class StoryFile(BaseModel):
    pages: list[str] = Field(min_length=1)


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigurationError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None


def _run(work: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(work)
    except (BookError, DatabaseNotReady, TemporalUnavailable, DevServerError) as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None


def _photos_in(directory: Path) -> list[Path]:
    photos = sorted(p for p in directory.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
    if not photos:
        raise typer.BadParameter(f"no photos ({', '.join(sorted(PHOTO_SUFFIXES))}) in {directory}")
    return photos


def _story_pages(story: Path | None, count: int) -> list[str] | None:
    if story is None:
        return None
    try:
        pages = StoryFile.model_validate_json(story.read_bytes()).pages
    except (OSError, ValidationError) as exc:
        raise typer.BadParameter(f"{story}: {exc}") from None
    if len(pages) != count:
        raise typer.BadParameter(f"{story} has {len(pages)} pages of text for {count} photos")
    return pages


async def _store_photos(store: ImageStore, book_id: str, photos: list[Path]) -> list[str]:
    urls = []
    for number, photo in enumerate(photos, start=1):
        data = photo.read_bytes()
        try:
            mime = image_mime_type(data)
        except NotAnImage as exc:
            raise typer.BadParameter(f"{photo}: {exc}") from None
        stored = await store.store(
            GeneratedImage(data, mime),
            f"storywink/{book_id}/originals/page_{number}",
            tags=[f"book_{book_id}", "original"],
            context={},
        )
        urls.append(stored.url)
    return urls


async def _create_book(
    settings: Settings,
    database: Database,
    *,
    photos: list[Path],
    title: str,
    child_name: str,
    style: str,
    texts: list[str] | None,
) -> str:
    book_id = new_id()
    urls = await _store_photos(build_store(settings), book_id, photos)
    new_pages = [books.NewPage(url, text=texts[i] if texts else None) for i, url in enumerate(urls)]
    book = await in_session(
        database.sessions,
        books.create_book,
        book_id=book_id,
        user_id="cli",
        title=title,
        child_name=child_name,
        art_style=style,
        pages=new_pages,
        status=BookStatus.STORY_READY if texts else BookStatus.DRAFT,
    )
    return book.id


@book_app.command("create")
def book_create(
    photos: Annotated[Path, typer.Option(exists=True, file_okay=False, help="Folder of photos")],
    title: Annotated[str, typer.Option(help="Book title")],
    child_name: Annotated[str, typer.Option(help="The child's name")],
    style: Annotated[str, typer.Option(help=f"Art style: {', '.join(STYLES)}")] = DEFAULT_STYLE,
    story: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help='JSON {"pages": [...]}')
    ] = None,
) -> None:
    """Create a book from a folder of photos (file-name order; the first is the title page).
    Prints only the new book id."""
    if style not in STYLES:
        raise typer.BadParameter(f"unknown style {style!r}; known: {', '.join(STYLES)}")
    photo_files = _photos_in(photos)
    texts = _story_pages(story, len(photo_files))
    settings = _settings()
    database = open_database(settings)
    book_id = _run(
        _create_book(
            settings,
            database,
            photos=photo_files,
            title=title,
            child_name=child_name,
            style=style,
            texts=texts,
        )
    )
    print(book_id)


async def _watch(client: IllustrationClient, book_id: str) -> BookOutcome:
    run = await client.start_illustration(book_id)
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
        result = asyncio.ensure_future(client.wait(book_id))
        while not result.done():
            progress = await client.progress(book_id)
            bar.update(
                task,
                total=progress.to_draw or None,
                completed=progress.done,
                description=progress.phase,
                detail=f"{progress.flagged} flagged, {progress.failed} failed",
            )
            await asyncio.wait([result], timeout=0.5)
        outcome = result.result()
        final = await client.progress(book_id)
        bar.update(task, total=final.total, completed=final.done, description=outcome.status)
        return outcome


@app.command()
def illustrate(book_id: str) -> None:
    """Start (or join) a book's illustration and show progress until it settles."""
    settings = _settings()

    async def go() -> BookOutcome:
        client = await IllustrationClient.connect(settings)
        return await _watch(client, book_id)

    outcome = _run(go())
    err.print(f"book {book_id}: [bold]{outcome.status.value}[/]")


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
    database = open_database(_settings())
    with database.sessions() as session:
        try:
            book = _book_json(books.get_book(session, book_id))
        except BookError as exc:
            err.print(f"[red]error:[/] {exc}")
            raise typer.Exit(1) from None
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


def _print_books_report(report: BooksReport) -> None:
    out = Console()
    if report.in_progress:
        table = Table(title="In progress", title_justify="left")
        for column in ("book", "title", "status", "pages", "run", "started", "updated", "state"):
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
                book.run_id or "-",
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
            out.print(f"  {book.book_id} ({escape(book.title)}): {run.summary}")
            out.print(f"    {escape(run.hint or '')}")
    out.print()
    outcomes = Table(title="Recent outcomes", title_justify="left")
    for column in ("book", "title", "status", "ok", "flagged", "failed", "pages", "updated"):
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
    book_id = await _create_book(
        settings,
        database,
        photos=photos,
        title=SAMPLE_TITLE,
        child_name=SAMPLE_CHILD_NAME,
        style=DEFAULT_STYLE,
        texts=sample_story(pages),
    )
    temporal = await connect_temporal(settings)
    providers = build_providers(settings)
    async with AsyncExitStack() as stack:
        for worker in build_workers(temporal, settings, database, providers):
            await stack.enter_async_context(worker)
        client = IllustrationClient(temporal, database.sessions, settings.temporal_task_queue)
        outcome = await _watch(client, book_id)
    await providers.aclose()
    with database.sessions() as session:
        book = books.get_book(session, book_id)
        gallery = write_gallery(
            out_dir / f"book-{book_id}.html",
            title=book.title,
            status=outcome.status.value,
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
    return book_id, outcome.status.value, gallery


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
