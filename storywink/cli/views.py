"""What `storywink status` and `storywink books` print."""

from __future__ import annotations

from typing import Any, Final

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from storywink.book.plain_text import printable
from storywink.book.report import BooksReport
from storywink.contract import BookStatus
from storywink.db.models import Book, new_id
from storywink.erasure.contract import ErasureOutcome
from storywink.pictures import PictureSigner

BOOK_ID_WIDTH: Final = len(new_id())


def book_json(book: Book, pictures: PictureSigner) -> dict[str, Any]:
    """The book as `status --json` prints it: its photos and pictures by signed URLs that
    expire at `urls_expire_at` (a public one stored before private images by its URL)."""
    expires_at = pictures.expiry()
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
                "original_image_url": pictures.url(p.photo_ref, expires_at),
                "generated_image_url": pictures.url(p.picture_ref, expires_at),
            }
            for p in book.pages
        ],
        "urls_expire_at": expires_at.isoformat(),
    }


_STATUS_COLOURS = {
    BookStatus.COMPLETED: "green",
    BookStatus.PARTIAL: "yellow",
    BookStatus.FAILED: "red",
}


def _add_id_and_title_columns(table: Table) -> None:
    """Ids are never cut, whatever the terminal's width: the title gives way instead."""
    table.add_column("book", no_wrap=True, min_width=BOOK_ID_WIDTH)
    table.add_column("title", overflow="ellipsis", no_wrap=True, ratio=1, min_width=5)


def print_books_report(report: BooksReport) -> None:
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
                escape(printable(book.title)),
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
            out.print(f"  {book.book_id} ({escape(printable(book.title))}): {escape(why)}")
            if held_by:
                out.print(f"    held by {held_by}")
            out.print(f"    {escape(run.hint or '')}")
    out.print()
    outcomes = Table(title="Recent outcomes", title_justify="left")
    _add_id_and_title_columns(outcomes)
    for column in ("status", "ok", "flagged", "failed", "pages", "cost", "updated"):
        outcomes.add_column(
            column,
            justify="right" if column in ("ok", "flagged", "failed", "pages", "cost") else "left",
        )
    for outcome in report.recent:
        colour = _STATUS_COLOURS.get(outcome.status, "default")
        outcomes.add_row(
            outcome.book_id,
            escape(printable(outcome.title)),
            f"[{colour}]{outcome.status.value}[/]",
            str(outcome.pages.ok),
            str(outcome.pages.flagged),
            str(outcome.pages.failed),
            str(outcome.pages.total),
            f"${outcome.cost_usd:.2f}",
            report.ago(outcome.updated_at),
        )
    out.print(outcomes if report.recent else "No book has settled yet.")


def erased_line(outcome: ErasureOutcome) -> str:
    """One line for an erasure's end: what it stopped and deleted."""
    if not outcome.found:
        return f"book {outcome.book_id}: no such book; {outcome.assets_deleted} assets deleted"
    rows = outcome.rows
    stopped = (
        f"; stopped {', '.join(outcome.stopped_workflow_ids)}"
        if outcome.stopped_workflow_ids
        else ""
    )
    return (
        f"book {outcome.book_id} erased: {outcome.assets_deleted} assets, {rows.pages} pages, "
        f"{rows.notifications} notifications deleted{stopped}"
    )
