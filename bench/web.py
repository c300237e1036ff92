"""Web: 500 concurrent event streams over 5 books being illustrated, plus 50 requests/s
reading books, against one stream per book in the same run.

The app is `storywink serve` (one process) on the bench's SQLite database and dev server,
the books are illustrated by one `python worker.py` with a fake model latency long enough
that they are all still being drawn while the load runs. Figures: the latency of the book
reads (p50 / p99), the app's RSS (highest VmRSS seen), its progress reads from Temporal
per second (`storywink_web_progress_reads_total`), and the page events the streams got.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Final

import httpx
import jwt
from temporalio.client import Client

from bench.harness import LOCAL_HOSTS, ROOT, BenchError, Rig, rig
from bench.report import BenchResult, Cell, Column
from tests.support.worker_processes import free_port

BOOKS: Final = 5
PAGES: Final = 12
MODEL_LATENCY_SECONDS: Final = 1.5
WORKER_CONCURRENCY: Final = 3
READS_PER_SECOND: Final = 50
PROGRESS_INTERVAL_SECONDS: Final = 1.0
STREAMS_PER_BOOK: Final = (1, 100)
ROUNDS: Final = 2
WINDOW_SECONDS: Final = {"full": 15.0, "quick": 8.0}
SECRET: Final = "bench-web-secret-0123456789abcdefghijkl"
USER: Final = "bench-parent"


def token() -> str:
    claims = {"sub": USER, "exp": int(time.time()) + 3600}
    return jwt.encode(claims, SECRET, algorithm="HS256")


@contextlib.contextmanager
def web_server(bench: Rig) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`storywink serve` on the rig's database and queues; (base URL, process)."""
    port = free_port()
    settings = bench.settings
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GEMINI", "GOOGLE"))}
    env.update(
        {
            "TEMPORAL_ADDRESS": settings.temporal_address,
            "TEMPORAL_TASK_QUEUE": settings.temporal_task_queue,
            "TEMPORAL_ILLUSTRATION_TASK_QUEUE": settings.temporal_illustration_task_queue,
            "DATABASE_URL": settings.resolved_database_url,
            "STORAGE": "local",
            "STORAGE_DIR": str(bench.directory / "storage"),
            "WEB_JWT_SECRET": SECRET,
            "WEB_PROGRESS_INTERVAL_SECONDS": str(PROGRESS_INTERVAL_SECONDS),
            "LOG_LEVEL": "WARNING",
            "NO_PROXY": LOCAL_HOSTS,
            "no_proxy": LOCAL_HOSTS,
        }
    )
    log = bench.directory / "web.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "storywink"), "serve", "--port", str(port)],
            cwd=bench.directory,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        yield f"http://127.0.0.1:{port}", process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def rss_kib(process: subprocess.Popen[bytes]) -> int:
    for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise BenchError("no VmRSS for the web app")


async def progress_reads(http: httpx.AsyncClient) -> float:
    text = (await http.get("/metrics")).text
    found = re.search(r"^storywink_web_progress_reads_total ([0-9.e+]+)$", text, re.MULTILINE)
    if found is None:
        raise BenchError("the web app's /metrics has no storywink_web_progress_reads_total")
    return float(found.group(1))


async def wait_ready(http: httpx.AsyncClient, process: subprocess.Popen[bytes]) -> None:
    async with asyncio.timeout(60):
        while True:
            if process.poll() is not None:
                raise BenchError(f"storywink serve exited with {process.returncode}")
            with contextlib.suppress(httpx.TransportError):
                if (await http.get("/readyz")).status_code == 200:
                    return
            await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def viewers(url: str, book_ids: list[str], per_book: int) -> AsyncIterator[list[int]]:
    """`per_book` open streams on each book, held by `bench.web_viewers` in its own process;
    yields a list that holds the page events they got once the block ends."""
    env = {**os.environ, "BENCH_WEB_TOKEN": token(), "NO_PROXY": LOCAL_HOSTS}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.web_viewers",
        url,
        str(per_book),
        *book_ids,
        cwd=ROOT,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdin is not None and process.stdout is not None
    got: list[int] = []
    try:
        async with asyncio.timeout(90):
            line = await process.stdout.readline()
        if line.strip() != b"open":
            raise BenchError(f"the viewers did not open their streams: {line!r}")
        yield got
    finally:
        process.stdin.close()
        out = await process.stdout.read()
        await process.wait()
    got.append(int(out.strip() or b"0"))


async def read_books(http: httpx.AsyncClient, book_ids: list[str], seconds: float) -> list[float]:
    """GET /books/{id} at READS_PER_SECOND (each on its own schedule); latencies in ms."""
    latencies: list[float] = []

    async def one(book_id: str) -> None:
        started = time.perf_counter()
        answer = await http.get(f"/books/{book_id}")
        if answer.status_code != 200:
            raise BenchError(f"GET /books answered {answer.status_code}")
        latencies.append((time.perf_counter() - started) * 1000)

    pending = []
    start = time.monotonic()
    for n in range(int(seconds * READS_PER_SECOND)):
        await asyncio.sleep(max(0.0, start + n / READS_PER_SECOND - time.monotonic()))
        pending.append(asyncio.create_task(one(book_ids[n % len(book_ids)])))
    await asyncio.gather(*pending)
    return latencies


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def measure(
    bench: Rig, url: str, process: subprocess.Popen[bytes], per_book: int, window: float
) -> dict[str, Cell]:
    headers = {"Authorization": f"Bearer {token()}"}
    # Idle connections closed before the server's keep-alive timeout (5 s) closes them
    # under a request.
    limits = httpx.Limits(max_connections=100, keepalive_expiry=2.0)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30, limits=limits) as api:
        book_ids = [bench.create_book(PAGES, f"Web {per_book}", USER) for _ in range(BOOKS)]
        async with viewers(url, book_ids, per_book) as page_events:
            for book_id in book_ids:
                started = await api.post(f"/books/{book_id}/illustration")
                if started.status_code != 202:
                    raise BenchError(f"start answered {started.status_code}: {started.text}")
            reads_before = await progress_reads(api)
            began = time.monotonic()
            rss_before = peak_rss = rss_kib(process)
            reading = asyncio.create_task(read_books(api, book_ids, window))
            while not reading.done():
                peak_rss = max(peak_rss, rss_kib(process))
                await asyncio.sleep(0.5)
            latencies = await reading
            elapsed = time.monotonic() - began
            reads = await progress_reads(api) - reads_before
        for book_id in book_ids:  # leave the next case an idle worker
            await api.delete(f"/books/{book_id}/illustration")
        await asyncio.sleep(3)
    return {
        "streams": BOOKS * per_book,
        "books": BOOKS,
        "reads": len(latencies),
        "p50_ms": round(statistics.median(latencies), 1),
        "p99_ms": round(percentile(latencies, 0.99), 1),
        "rss_before_mib": round(rss_before / 1024, 1),
        "rss_mib": round(peak_rss / 1024, 1),
        "progress_reads_per_s": round(reads / elapsed, 2),
        "page_events": page_events[0],
    }


async def run(client: Client, quick: bool) -> BenchResult:
    window = WINDOW_SECONDS["quick" if quick else "full"]
    result = BenchResult(
        name="web",
        title=f"Web backend: event streams over {BOOKS} books being illustrated, "
        f"{READS_PER_SECOND} book reads/s",
        columns=[
            Column("streams", "streams"),
            Column("reads", "book reads"),
            Column("p50_ms", "p50 (ms)", ".1f"),
            Column("p99_ms", "p99 (ms)", ".1f"),
            Column("rss_before_mib", "app RSS before (MiB)", ".1f"),
            Column("rss_mib", "app RSS peak (MiB)", ".1f"),
            Column("progress_reads_per_s", "progress reads/s", ".2f"),
            Column("page_events", "page events"),
        ],
        parameters={
            "books": BOOKS,
            "pages_per_book": PAGES,
            "model_latency_s": MODEL_LATENCY_SECONDS,
            "worker_concurrency": WORKER_CONCURRENCY,
            "reads_per_second": READS_PER_SECOND,
            "progress_interval_s": PROGRESS_INTERVAL_SECONDS,
            "window_s": window,
            "load_1min_at_start": round(os.getloadavg()[0], 2),
        },
    )
    async with rig(client) as bench:
        with bench.workers(1, ILLUSTRATION_CONCURRENCY=WORKER_CONCURRENCY) as workers:
            await bench.wait_for_workers(workers)
            bench.fakes.gemini.set_latency(MODEL_LATENCY_SECONDS)
            with web_server(bench) as (url, process):
                async with httpx.AsyncClient(base_url=url, timeout=10) as probe:
                    await wait_ready(probe, process)
                for _ in range(1 if quick else ROUNDS):  # interleaved: load drifts
                    for per_book in STREAMS_PER_BOOK:
                        row = await measure(bench, url, process, per_book, window)
                        result.rows.append(row)
    one = [row for row in result.rows if row["streams"] == BOOKS * STREAMS_PER_BOOK[0]]
    many = [row for row in result.rows if row["streams"] == BOOKS * STREAMS_PER_BOOK[1]]
    ratios = {
        key: round(_median(many, key) / max(_median(one, key), 1e-9), 2)
        for key in ("p50_ms", "p99_ms", "progress_reads_per_s")
    }
    # RSS does not shrink back after a case: compare the first round's, whose one stream
    # per book ran first.
    ratios["rss_mib"] = round(float(many[0]["rss_mib"] or 0) / float(one[0]["rss_mib"] or 1), 2)
    result.parameters.update({f"ratio_{key}": value for key, value in ratios.items()})
    result.notes.append(
        f"{BOOKS * STREAMS_PER_BOOK[1]} streams vs {BOOKS * STREAMS_PER_BOOK[0]} "
        f"(medians of the rounds; RSS: the first round's peaks): p50 x{ratios['p50_ms']}, "
        f"p99 x{ratios['p99_ms']}, RSS x{ratios['rss_mib']}, progress reads/s "
        f"x{ratios['progress_reads_per_s']} (one watcher per book: about "
        f"{BOOKS / PROGRESS_INTERVAL_SECONDS:g}/s either way)"
    )
    result.notes.append(
        "the viewers hold their streams in a process of their own; the machine's load "
        "average is in the JSON: other work on its 2 cores moves every figure"
    )
    return result


def _median(rows: list[dict[str, Cell]], key: str) -> float:
    return float(statistics.median(float(row[key] or 0) for row in rows))
