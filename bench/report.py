"""A bench's figures: a short table on stdout and `bench/results/<name>.json`."""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"

Cell = str | int | float | None


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    format: str = ""  # a format spec for numbers, e.g. ".2f"


@dataclass
class BenchResult:
    name: str
    title: str
    columns: list[Column]
    rows: list[dict[str, Cell]] = field(default_factory=list)
    parameters: dict[str, Cell] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def machine() -> dict[str, Cell]:
    load1, load5, _ = os.getloadavg()
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_1min": round(load1, 2),
        "load_5min": round(load5, 2),
    }


def write_json(result: BenchResult, *, quick: bool, seconds: float, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{result.name}.json"
    document = {
        "bench": result.name,
        "title": result.title,
        "quick": quick,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "wall_seconds": round(seconds, 1),
        "machine": machine(),
        "parameters": result.parameters,
        "rows": result.rows,
        "notes": result.notes,
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def format_table(result: BenchResult) -> str:
    headers = [column.header for column in result.columns]
    body = [
        [_cell(row.get(column.key), column.format) for column in result.columns]
        for row in result.rows
    ]
    widths = [max(len(text) for text in texts) for texts in zip(headers, *body, strict=True)]
    lines = [f"== {result.title}"]
    if result.parameters:
        lines.append("   " + ", ".join(f"{k}={v}" for k, v in result.parameters.items()))
    lines.append("  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True)))
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True)) for cells in body]
    lines += [f"   note: {note}" for note in result.notes]
    return "\n".join(lines)


def _cell(value: Cell, spec: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and spec:
        return format(value, spec)
    return str(value)
