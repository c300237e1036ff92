"""`storywink story BOOK_ID` and `storywink page set-text`: write and edit a book's story.

Registered on the `storywink` command by importing this module (`storywink.cli` does);
errors follow its rules (one `error: ...` line and an `ExitCode`).
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from storywink.book.records import get_book
from storywink.cli.commands import app
from storywink.cli.exits import ExitCode, err, one_line_errors, run_or_exit, settings_or_exit
from storywink.cli.watch import watch_story
from storywink.contract import BookStatus, StoryOutcome
from storywink.db.connection import open_database
from storywink.story import records as story_books
from storywink.story.client import StoryClient

page_app = typer.Typer(
    help="A book's pages: edit their text before illustration, redraw one after.",
    no_args_is_help=True,
)
app.add_typer(page_app, name="page")


def print_story(book_id: str) -> None:
    settings = settings_or_exit()
    with one_line_errors(), open_database(settings).sessions() as session:
        for page in get_book(session, book_id).pages:
            text = page.text or f"(no text: {page.text_problem or 'not written'})"
            print(f"{page.page_number:>2}. {text}")


@app.command()
def story(book_id: str) -> None:
    """Write (or rewrite) a book's story, show progress until it is ready, print its text.

    Exit codes: 0 STORY_READY, 5 FAILED (the reason is printed), 1 refused (not found,
    being illustrated, already STORY_READY) or the run ended without a story."""
    settings = settings_or_exit()

    async def go() -> StoryOutcome:
        client = await StoryClient.connect(settings)
        return await watch_story(client, book_id)

    outcome = run_or_exit(go())
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
    settings = settings_or_exit()

    with one_line_errors(), open_database(settings).sessions() as session:
        story_books.update_page_text(session, book_id, page, text)
    err.print(f"book {book_id}: page {page} updated")
