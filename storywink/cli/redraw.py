"""`storywink page redraw BOOK PAGE [--note ...]`: draw one page of a book again.

Registered on `storywink page` by importing this module (`storywink.cli` does); errors
follow the command's rules (one `error: ...` line and an `ExitCode`).
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from storywink.cli.exits import ExitCode, err, run_or_exit, settings_or_exit
from storywink.cli.story import page_app
from storywink.contract import CHANGE_REQUEST_LIMIT, BookStatus, RedrawOutcome
from storywink.illustration.client import IllustrationClient

_EXIT_FOR_STATUS = {BookStatus.COMPLETED: ExitCode.OK, BookStatus.PARTIAL: ExitCode.PARTIAL}


@page_app.command("redraw")
def page_redraw(
    book_id: str,
    page: Annotated[int, typer.Argument(min=1, help="Page number (1 is the title page)")],
    note: Annotated[
        str | None,
        typer.Option(help=f"What to change, for the model (at most {CHANGE_REQUEST_LIMIT} chars)"),
    ] = None,
) -> None:
    """Draw one page of a COMPLETED or PARTIAL book again, and wait until it is recorded.
    The page keeps its picture until the new one is; asks for the book while its redraw
    runs join that run.

    Exit codes: 0 the book is COMPLETED, 4 PARTIAL, 1 refused (not found, no such page,
    not illustrated yet, another run holds the book) or the run failed, 2 bad input."""
    settings = settings_or_exit()
    if note is not None and len(note) > CHANGE_REQUEST_LIMIT:
        err.print(f"error: --note is {len(note)} characters; at most {CHANGE_REQUEST_LIMIT}")
        raise typer.Exit(ExitCode.BAD_INPUT)

    async def go() -> RedrawOutcome:
        client = await IllustrationClient.connect(settings)
        run = await client.redraw_page(book_id, page, note)
        err.print(escape(f"book {book_id}: redrawing page {page} (workflow {run.workflow_id})"))
        return await client.wait_for_redraw(book_id)

    outcome = run_or_exit(go())
    for result in outcome.redrawn:
        reason = f" — {result.moderation_reason}" if result.moderation_reason else ""
        print(f"  page {result.page_number:>2}: {result.moderation_status.value}{escape(reason)}")
    for refused in outcome.refused:
        err.print(escape(f"  refused: {refused}"), highlight=False)
    book = outcome.book
    err.print(
        f"book {book_id}: {book.status.value} "
        f"({book.pages_with_image}/{book.pages_total} pages illustrated)"
    )
    raise typer.Exit(_EXIT_FOR_STATUS.get(book.status, ExitCode.FAILED))
