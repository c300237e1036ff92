"""`storywink costs`: what the model calls cost since a time, by day, parent, model or
book, from the ledger (docs/costs.md).

Registered on the `storywink` command by importing this module (`storywink.cli` does).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from storywink.cli.commands import app
from storywink.cli.exits import ExitCode, fail, one_line_errors, settings_or_exit
from storywink.cost.report import CostGrouping, CostReport, costs_since, describe
from storywink.db.connection import open_database

_SPAN = re.compile(r"^(\d+)([dhm])$")
_UNIT = {"d": "days", "h": "hours", "m": "minutes"}


def parse_since(value: str, now: datetime) -> datetime:
    """`7d`, `12h`, `30m`, or a date or time in ISO form (UTC unless it says)."""
    if match := _SPAN.match(value.strip()):
        return now - timedelta(**{_UNIT[match[2]]: int(match[1])})
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(
            f"--since {value!r}: give a span (7d, 12h, 30m) or an ISO date (2026-12-01)"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


@app.command("costs")
def costs(
    since: Annotated[
        str, typer.Option(help="A span back from now (7d, 12h) or an ISO date.")
    ] = "7d",
    by: Annotated[CostGrouping, typer.Option(help="Group by day, user, model or book.")] = (
        CostGrouping.DAY
    ),
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for machines.")] = False,
) -> None:
    """What the model calls cost: dollars, calls, those that may have been billed."""
    settings = settings_or_exit()
    try:
        start = parse_since(since, datetime.now(UTC))
    except ValueError as exc:
        fail(ExitCode.BAD_INPUT, str(exc))
    with one_line_errors():
        database = open_database(settings)
        with database.sessions() as session:
            report = costs_since(session, start, by)
    if as_json:
        print(report.model_dump_json(indent=2))
    else:
        print_cost_report(report)


def print_cost_report(report: CostReport) -> None:
    print(f"Model calls since {report.since:%Y-%m-%d %H:%M} UTC, by {report.by.value}:")
    width = max((len(line.key) for line in report.lines), default=5)
    for line in report.lines:
        print(f"  {line.key:<{width}}  {describe(line)}")
    print(f"  {'total':<{width}}  {describe(report.total)}")
