"""`storywink story BOOK_ID` and `storywink page set-text`: write and edit a book's story.

Registered on the `storywink` command by `storywink.cli`; errors follow its rules (one
`error: ...` line and an `ExitCode`).
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.markup import escape

from storywink import books, story_books
from storywink.cli import ExitCode, _run, _settings, app, err, one_line_errors
from storywink.connections import open_database
from storywink.shared import BookStatus
from storywink.story_client import StoryClient
from storywink.story_contract import StoryOutcome

page_app = typer.Typer(help="Edit a book's pages before illustration.", no_args_is_help=True)
app.add_typer(page_app, name="page")
POLL_SECONDS = 0.5


async def watch_story(client: StoryClient, book_id: str) -> StoryOutcome:
    """Start (or join) the book's story run and show its phase until it ends."""
    run = await client.start_story(book_id)
    err.print(f"writing the story of book {book_id} (workflow {run.workflow_id})")
    with err.status("starting") as status:
        ending = asyncio.ensure_future(client.wait_for_story(book_id))
        while not ending.done():
            progress = await client.story_progress(book_id)
            status.update(f"{progress.phase} ({progress.pages} pages)")
            await asyncio.wait([ending], timeout=POLL_SECONDS)
        return ending.result()


def print_story(book_id: str) -> None:
    settings = _settings()
    with one_line_errors(), open_database(settings).sessions() as session:
        for page in books.get_book(session, book_id).pages:
            text = page.text or f"(no text: {page.text_problem or 'not written'})"
            print(f"{page.page_number:>2}. {text}")


@app.command()
def story(book_id: str) -> None:
    """Write (or rewrite) a book's story, show progress until it is ready, print its text.

    Exit codes: 0 STORY_READY, 5 FAILED (the reason is printed), 1 refused (not found,
    being illustrated, already STORY_READY) or the run ended without a story."""
    settings = _settings()

    async def go() -> StoryOutcome:
        client = await StoryClient.connect(settings)
        return await watch_story(client, book_id)

    outcome = _run(go())
    if outcome.status is not BookStatus.STORY_READY:
        reason = f": {outcome.reason}" if outcome.reason else ""
        err.print(escape(f"book {book_id}: story {outcome.status.value}{reason}"), highlight=False)
        raise typer.Exit(ExitCode.FAILED)
    err.print(f"book {book_id}: STORY_READY ({outcome.pages_written} pages)")
    print_story(book_id)


@page_app.command("set-text")
def page_set_text(
    book_id: str,
    page: Annotated[int, typer.Argument(min=1, help="Page number (1 is the title page)")],
    text: str,
) -> None:
    """Change one page's text before illustration (refused while a run works on the book)."""
    settings = _settings()

    with one_line_errors(), open_database(settings).sessions() as session:
        story_books.update_page_text(session, book_id, page, text)
    err.print(f"book {book_id}: page {page} updated")
