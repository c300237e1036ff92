"""Where a page's time goes: py-spy attached to the bench's worker, summarised.

`Profiler(pid)` runs `py-spy record --pid PID --format raw` (collapsed stacks: one line
per distinct stack, frames root first, then its sample count) until stopped; `summary`
attributes every sample to the innermost frame it recognises (`PARTS`, most specific
first), so the table reads as CPU by part of the page's work.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Final

RATE_HZ: Final = 200
# (what, a substring of the frame "function (file:line)"), innermost match wins.
PARTS: Final = (
    ("photo normalise / image checks (Pillow)", "PIL/"),
    ("Gemini SDK (google-genai)", "google/genai/"),
    ("pydantic (SDK models, checkpoints)", "pydantic"),
    ("Cloudinary SDK + urllib3", "cloudinary/"),
    ("Cloudinary SDK + urllib3", "urllib3/"),
    ("HTTP client (httpx / httpcore / h11)", "httpx/"),
    ("HTTP client (httpx / httpcore / h11)", "httpcore/"),
    ("HTTP client (httpx / httpcore / h11)", "h11/"),
    ("database (SQLAlchemy, sqlite3)", "sqlalchemy/"),
    ("database (SQLAlchemy, sqlite3)", "sqlite3/"),
    ("Temporal SDK (Python side)", "temporalio/"),
    ("logging", "logging/"),
    ("asyncio event loop, threads", "asyncio/"),
    ("asyncio event loop, threads", "concurrent/futures/"),
    ("asyncio event loop, threads", "threading.py"),
    ("our code (storywink, activities)", "storywink/"),
    ("our code (storywink, activities)", "activities/"),
)


# (stage of the page's work, a substring of a frame): the first stage any frame of a
# sample matches, in this order (the model call runs inside the ledger's, so it comes
# first). Database work runs in threads whose stacks start at the records' function.
STAGES: Final = (
    ("prepare + finalize (book steps)", "prepare_illustration ("),
    ("prepare + finalize (book steps)", "finalize_book ("),
    ("prepare + finalize (book steps)", "settle_book ("),
    ("model call: Gemini SDK", "illustrate (storywink/providers/gemini.py"),
    ("model call: Gemini SDK", "read_image (storywink/providers/gemini.py"),
    ("upload: Cloudinary SDK", "storywink/providers/cloudinary_store.py"),
    ("photo: fetch + normalise", "_fetch_photo ("),
    ("photo: fetch + normalise", "normalise_photo ("),
    ("model call: ledger rows + budget", "storywink/cost/"),
    ("style reference: fetch", "fetch (storywink/providers/fetch.py"),
    ("draft kept in the database", "save_draft ("),
    ("page recorded", "record_page ("),
    ("settled-page check", "settled_result ("),
    ("heartbeats", "beat_forever ("),
    ("heartbeats", "checkpoint ("),
    ("Temporal SDK: polls, task (de)serialisation, completions", "temporalio/"),
)


class Profiler:
    def __init__(self, pid: int, output: Path, gil_only: bool = False) -> None:
        self.output = output
        beside = Path(sys.executable).with_name("py-spy")
        py_spy = str(beside) if beside.exists() else shutil.which("py-spy") or "py-spy"
        command = [py_spy, "record", "--pid", str(pid), "--rate", str(RATE_HZ), "--nonblocking"]
        if gil_only:  # only threads holding the GIL: the interpreter's own CPU
            command.append("--gil")
        self._process = subprocess.Popen(
            [*command, "--format", "raw", "--output", str(output)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        self._process.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        self._process.wait(timeout=30)


def by_library(raw: Path) -> list[tuple[str, float]]:
    """(library, share of the samples), largest first."""
    return _shares(raw, _part)


def by_stage(raw: Path) -> list[tuple[str, float]]:
    """(stage of the page's work, share of the samples), largest first."""
    return _shares(raw, _stage)


def _shares(raw: Path, classify: Callable[[list[str]], str]) -> list[tuple[str, float]]:
    counts: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        if stack and samples.isdigit():
            counts[classify(stack.split(";"))] += int(samples)
    total = sum(counts.values()) or 1
    return [(part, round(n / total, 3)) for part, n in counts.most_common()]


def _stage(frames: list[str]) -> str:
    for stage, marker in STAGES:
        if any(marker in frame for frame in frames):
            return stage
    return "other (event loop, interpreter)"


def _part(frames: list[str]) -> str:
    for frame in reversed(frames):
        for part, marker in PARTS:
            if marker in frame:
                return part
    return "other (interpreter, imports)"
