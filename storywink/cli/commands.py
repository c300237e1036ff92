"""The `storywink` command: its subcommands and their arguments.

How a command fails (one line, an exit code): `exits`; what it prints: `views` and `watch`.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from storywink import contract
from storywink.book import report as book_report
from storywink.book.inputs import NewBook, photos_in, story_pages
from storywink.book.plain_text import printable
from storywink.book.records import get_book
from storywink.book.report import BooksReport
from storywink.book.upload import create_book_from_photos
from storywink.cli.exits import (
    ExitCode,
    checked_settings,
    err,
    fail,
    one_line_errors,
    run_or_exit,
    settings_or_exit,
)
from storywink.cli.views import book_json, erased_line, print_books_report
from storywink.cli.watch import (
    ending_line,
    exit_code_for,
    say_connection,
    watch_illustration,
    watch_story,
)
from storywink.config import DEFAULT_DATA_DIR, Settings
from storywink.cost.report import book_cost, describe
from storywink.db.connection import open_database
from storywink.db.engine import make_engine, upgrade_to_head
from storywink.demo.devserver import ensure_dev_server, stop_dev_server, web_ui_url
from storywink.erasure.client import ErasureClient
from storywink.illustration.client import IllustrationClient, RunEnd
from storywink.illustration.style_assets import publish_references
from storywink.illustration.styles import DEFAULT_STYLE, STYLES
from storywink.pictures import picture_signer
from storywink.providers.factory import build_store
from storywink.temporal.connection import connect_temporal

app = typer.Typer(help="Storywink: illustrate children's books on Temporal.", no_args_is_help=True)
book_app = typer.Typer(help="Create and erase books.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
devserver_app = typer.Typer(help="The local Temporal dev server used by the demo.")
app.add_typer(book_app, name="book")
app.add_typer(db_app, name="db")
app.add_typer(devserver_app, name="devserver")
styles_app = typer.Typer(help="The art styles' reference images.", no_args_is_help=True)
app.add_typer(styles_app, name="styles")
images_app = typer.Typer(help="The books' photos and pictures.", no_args_is_help=True)
app.add_typer(images_app, name="images")
runs_app = typer.Typer(help="Workflow runs in flight.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")


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


@book_app.command("delete")
def book_delete(
    book_id: Annotated[str | None, typer.Argument(help="The book to erase")] = None,
    user: Annotated[
        str | None, typer.Option(help="Erase every book of this parent (an account deletion)")
    ] = None,
    wait: Annotated[bool, typer.Option(help="Wait until each book is erased")] = True,
) -> None:
    """Erase a book for good: stop a run working on it, delete its photos and pictures from
    the CDN or local storage, then its rows. One line per book (docs/erasure.md)."""
    if (book_id is None) == (user is None):
        fail(ExitCode.BAD_INPUT, "name a book (storywink book delete BOOK_ID) or --user ID")
    settings = settings_or_exit()

    async def go() -> list[str]:
        client = await ErasureClient.connect(settings)
        if book_id is not None:
            runs = [await client.erase_book(book_id)]
        else:
            assert user is not None
            runs = await client.erase_books_of(user)
        if not wait:
            return [f"book {run.book_id}: erasure started ({run.workflow_id})" for run in runs]
        return [erased_line(await client.wait_for_erasure(run.book_id)) for run in runs]

    lines = run_or_exit(go())
    if not lines:
        print(f"parent {printable(user or '')} has no books")
    for line in lines:
        print(line)


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
    1 refused (not found, not ready, busy) or the run failed, 2 bad configuration,
    8 Temporal did not answer for a minute while following the run (it goes on)."""
    settings = settings_or_exit()

    async def go() -> RunEnd:
        client = await IllustrationClient.connect(settings, on_connection=say_connection)
        return await watch_illustration(client, book_id, priority)

    end = run_or_exit(go())
    err.print(escape(ending_line(end)), highlight=False)
    raise typer.Exit(exit_code_for(end))


@app.command()
def status(book_id: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Show a book and its pages."""
    settings = settings_or_exit()
    with one_line_errors():
        database = open_database(settings)
        with database.sessions() as session:
            book = book_json(get_book(session, book_id), picture_signer(settings))
            cost = book_cost(session, book_id)
    if as_json:
        print(json.dumps({**book, "cost": cost.model_dump(mode="json")}, indent=2))
        return
    title = printable(book["title"])
    print(f"{title} ({book['id']}): {book['status']}, style {book['art_style']}")
    for page in book["pages"]:
        reason = f" — {printable(page['moderation_reason'])}" if page["moderation_reason"] else ""
        line = cost.pages.get(page["page_number"])
        spent = f"  [{describe(line)}]" if line is not None else ""
        print(f"  page {page['page_number']:>2}: {page['moderation_status']}{reason}{spent}")
        if page["generated_image_url"]:
            print(f"           {page['generated_image_url']}")
    if cost.story.calls:
        print(f"  story: {describe(cost.story)}")
    print(f"  cost: {describe(cost.total)}")
    if any(page["generated_image_url"] for page in book["pages"]):
        print(f"  picture URLs are signed: they expire at {book['urls_expire_at']}")


@app.command("books")
def books_overview(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for machines.")] = False,
    recent: Annotated[
        int, typer.Option(min=0, max=1000, help="How many recently settled books to list.")
    ] = book_report.DEFAULT_RECENT,
) -> None:
    """Books in progress, recent outcomes, and books stuck without a running workflow.

    Exits with 3 when a book is stuck, so monitoring can run it."""
    settings = settings_or_exit()

    async def go() -> BooksReport:
        database = await asyncio.to_thread(open_database, settings)
        temporal = await connect_temporal(settings)
        return await book_report.build_report(
            temporal, database.sessions, settings.temporal_task_queue, recent=recent
        )

    report = run_or_exit(go())
    if as_json:
        print(report.model_dump_json(indent=2))
    else:
        print_books_report(report)
    if report.stuck:
        raise typer.Exit(ExitCode.STUCK)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Bring the database (DATABASE_URL) to the latest migration."""
    settings = settings_or_exit()
    with one_line_errors():
        upgrade_to_head(make_engine(settings.resolved_database_url))
    err.print("database is at the latest migration")


@runs_app.command("upgrade")
def runs_upgrade(
    every_run: Annotated[
        bool, typer.Option("--all", help="Check every open run, not only pre-BookId ones.")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List them; move none.")] = False,
) -> None:
    """Move the open runs an earlier release started that this code cannot replay onto this
    code: each is reset to its first workflow task and keeps its book and drawn pages. The
    worker does this at start; this is the same, on demand (docs/upgrading.md)."""
    # the workflows' imports: only this command pays them
    from storywink.temporal import upgrade as run_upgrade
    from storywink.worker.assembly import WORKFLOWS

    settings = settings_or_exit()
    queue = settings.temporal_task_queue
    query = (run_upgrade.all_open_runs if every_run else run_upgrade.runs_without_book_id)(queue)

    async def go() -> int:
        temporal = await connect_temporal(settings)
        count = 0
        async for run in run_upgrade.stranded_runs(temporal, WORKFLOWS, query):
            count += 1
            moved = None if dry_run else await run_upgrade.move_to_this_code(temporal, run)
            where = f" -> run {moved.new_run_id}" if moved else ""
            print(f"{run.workflow_id} run {run.run_id}{where}: {run.problem}")
        return count

    count = run_or_exit(go())
    verb = "would move" if dry_run else "moved"
    err.print(f"{count} run(s) this code cannot replay; {verb} {count if count else 'none'}")


@images_app.command("privatize")
def images_privatize(
    book: Annotated[list[str] | None, typer.Option("--book", help="only this book")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run")] = False,
) -> None:
    """Move the public images of books stored before private images to private assets,
    then delete the public ones (docs/privacy.md). Run it once no worker of an older
    release is left; run it again after a failure, it goes on where it stopped."""
    from storywink.book.privatize import Privatized, privatize
    from storywink.providers.fetch import ImageFetcher

    settings = settings_or_exit()

    async def go() -> Privatized:
        database = open_database(settings)
        async with ImageFetcher(
            timeout_seconds=settings.fetch_timeout_seconds,
            max_bytes=settings.max_fetch_bytes,
            allow_private=settings.allow_private_fetch,
        ) as fetcher:
            return await privatize(
                database.sessions, build_store(settings), fetcher, book, dry_run=dry_run
            )

    done = run_or_exit(go())
    for image in done.moved:
        print(f"{image.book_id} page {image.page_number} {image.kind}: {image.new_id}")
    for url in done.left_public:
        err.print(f"not deleted (not this CDN's, or no delete): {escape(url)}", highlight=False)
    for book_id in done.busy_books:
        err.print(f"{book_id}: a run holds it; run this again once it is settled")
    verb = "would move" if dry_run else "moved"
    err.print(f"{verb} {len(done.moved)} image(s) to private assets")
    if done.busy_books:
        raise typer.Exit(3)


@styles_app.command("publish")
def styles_publish() -> None:
    """Upload the shipped style reference images to the configured storage (once per
    content: publishing again changes nothing) and print the STYLE_ASSETS_URL to set."""
    settings = settings_or_exit()
    published = run_or_exit(publish_references(build_store(settings)))
    err.print(
        f"{published.uploaded} reference images uploaded, {published.already_there} already "
        f"there; set STYLE_ASSETS_URL to the URL below"
    )
    print(published.assets_url)


@devserver_app.command("stop")
def devserver_stop() -> None:
    """Stop the dev server `storywink demo` started."""
    err.print("stopped" if stop_dev_server() else "no dev server started by storywink is running")


async def _demo(settings: Settings, pages: int, out_dir: Path) -> tuple[str, str, Path]:
    # Imported here: the worker's wiring (models, CDN SDKs) would slow every other command.
    from storywink.demo.run import create_sample_book, workers_in_process, write_book_gallery

    database = open_database(settings, create=True)
    book_id = await create_sample_book(settings, database, pages, out_dir / "photos")
    async with workers_in_process(settings, database) as clients:
        await watch_story(clients.stories, book_id)
        end = await watch_illustration(clients.illustrations, book_id)
    status = end.book.status.value
    return (
        book_id,
        status,
        write_book_gallery(
            database,
            book_id,
            status,
            out_dir / f"book-{book_id}.html",
            picture_signer(settings),
        ),
    )


def _live_page_line(settings: Settings) -> str:
    """Where the live book page is, signed in as the demo's account (the token is in the
    URL's fragment, which the browser never sends to the server)."""
    from storywink.web.auth import issue_local_token, uses_public_keys

    url = f"http://{settings.web_host}:{settings.web_port}/"
    if uses_public_keys(settings):
        return f"{url} after `storywink serve` (sign in with your identity provider's token)"
    token = issue_local_token(settings, NewBook.model_fields["user_id"].default)
    serve = "run `storywink serve` (and `python worker.py` for new books)"
    return f"{serve}, then open {url}#token={token}"


@app.command()
def demo(pages: Annotated[int, typer.Option(min=1, max=30)] = 6) -> None:
    """Write and illustrate a sample book on the embedded defaults and show where to look."""
    settings = settings_or_exit()
    started = run_or_exit(asyncio.to_thread(ensure_dev_server, settings.temporal_address))
    if started:
        err.print(f"started a Temporal dev server at {settings.temporal_address}")
    book_id, outcome_status, gallery = run_or_exit(
        _demo(settings, pages, DEFAULT_DATA_DIR / "demo")
    )
    workflow_id = contract.illustration_workflow_id(book_id)
    err.print(f"\nThe book is {outcome_status}.")
    err.print(f"The book:        {gallery.resolve().as_uri()}")
    err.print(f"Pictures:        {settings.storage_dir.resolve() / 'storywink' / book_id}")
    if ui := web_ui_url(settings, started=started):
        namespace = settings.temporal_namespace
        err.print(f"Temporal Web UI: {ui}/namespaces/{namespace}/workflows/{workflow_id}")
    else:
        err.print("Temporal Web UI: address unknown (set TEMPORAL_UI_URL)")
    err.print(f"Status:          storywink status {book_id}")
    err.print(f"Live page:       {_live_page_line(settings)}", highlight=False)
    if started:
        err.print("Stop the dev server with: storywink devserver stop")
