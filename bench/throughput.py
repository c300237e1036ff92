"""Throughput and CPU per page with an instant model, against a bare Temporal fan-out and
the SDK calls alone.

Ours: one `python worker.py` process, the fake Gemini answering at once and the fake
Cloudinary storing, so what is measured is the pipeline (fetches, prompt, SDK calls,
upload, database writes, heartbeats, the workflow's prepare and finalize). CPU seconds are
the worker process's and, apart, the Temporal dev server's, over the measured book.
Baselines in the same run: a workflow fanning out as many no-op activities on one
in-process worker with the same concurrency and the same two-queue layout (its CPU: this
process, where that worker runs); and the floor, the Gemini and Cloudinary SDK calls alone
in a loop against the same fakes (`bench/floor.py`, a process of its own).

`BENCH_PROFILE=1 python -m bench throughput` also attaches py-spy to the worker for the
measured book and prints where its samples went (`bench/profile.py`; `BENCH_PROFILE=gil`:
only the samples of the thread holding the GIL); the CPU figures of that run include the
profiler's sampling, so take them from a run without it.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from temporalio.client import Client
from temporalio.worker import Worker

from bench import profile
from bench.cpu import cpu_seconds, temporal_server_pid
from bench.fanout import FanOut, noop
from bench.harness import ROOT, Rig, rig
from bench.report import BenchResult, Cell, Column

PAGES = 100
QUICK_PAGES = 30
CONCURRENCY = 20
WARM_UP = 5


async def run(client: Client, quick: bool) -> BenchResult:
    pages = QUICK_PAGES if quick else PAGES
    result = BenchResult(
        name="throughput",
        title="Throughput and CPU per page, instant model, vs a bare fan-out and the SDK calls",
        columns=[
            Column("what", "what"),
            Column("items", "items"),
            Column("seconds", "seconds", ".2f"),
            Column("per_second", "per second", ".1f"),
            Column("cpu_ms_per_item", "CPU ms / item", ".1f"),
            Column("server_cpu_ms_per_item", "server CPU ms / item", ".1f"),
            Column("cpu_vs_floor", "CPU vs floor", ".2f"),
        ],
        parameters={"concurrency": CONCURRENCY, "model_latency_s": 0.0, "storage": "fake CDN"},
        notes=[
            "CPU: user + system seconds of the process doing the work (bare: this process, "
            "its in-process worker; storywink: the worker process; SDK calls: bench/floor.py)",
            "server CPU: the Temporal dev server's over the same interval",
            "floor: a bare activity's CPU + the SDK calls' CPU; CPU vs floor: ours / that",
        ],
    )
    server = temporal_server_pid()
    bare = await _bare_fan_out(client, pages, server)
    profiled: Path | None = None
    async with rig(client) as bench:
        sdk = await _sdk_calls(bench, pages)
        with bench.workers(1, ILLUSTRATION_CONCURRENCY=CONCURRENCY) as workers:
            await bench.wait_for_workers(workers)
            await bench.illustrate(WARM_UP, within=60)
            profiler = None
            if os.environ.get("BENCH_PROFILE"):
                profiled = bench.directory / "page-profile.txt"
                gil_only = os.environ["BENCH_PROFILE"] == "gil"
                profiler = profile.Profiler(workers[0].pid, profiled, gil_only)
                await asyncio.sleep(1.0)  # py-spy attaches
            worker_cpu, server_cpu = cpu_seconds(workers[0].pid), cpu_seconds(server)
            outcome, seconds, _ = await bench.illustrate(pages, within=120)
            ours = _Measured(
                seconds,
                cpu_seconds(workers[0].pid) - worker_cpu,
                cpu_seconds(server) - server_cpu,
            )
            if profiler is not None:
                profiler.stop()
        if profiled is not None:
            result.notes += _profile_notes(profiled)
    floor = bare.cpu / pages + sdk.cpu / pages
    result.rows += [
        _row("bare no-op fan-out", pages, bare, floor),
        _row("Gemini + Cloudinary SDK calls alone", pages, sdk, floor),
        {"what": "floor: bare activity + SDK calls", "cpu_ms_per_item": round(floor * 1000, 2)},
        _row(f"storywink ({outcome.status.value})", pages, ours, floor),
    ]
    return result


class _Measured:
    def __init__(self, seconds: float, cpu: float, server_cpu: float | None = None) -> None:
        self.seconds, self.cpu, self.server_cpu = seconds, cpu, server_cpu


def _row(what: str, items: int, measured: _Measured, floor: float) -> dict[str, Cell]:
    return {
        "what": what,
        "items": items,
        "seconds": round(measured.seconds, 3),
        "per_second": round(items / measured.seconds, 2),
        "cpu_ms_per_item": round(measured.cpu / items * 1000, 2),
        "server_cpu_ms_per_item": (
            None if measured.server_cpu is None else round(measured.server_cpu / items * 1000, 2)
        ),
        "cpu_vs_floor": round(measured.cpu / items / floor, 2),
    }


def _profile_notes(raw: Path) -> list[str]:
    libraries = ", ".join(f"{part} {share:.0%}" for part, share in profile.by_library(raw))
    stages = ", ".join(f"{stage} {share:.0%}" for stage, share in profile.by_stage(raw))
    kept = Path(tempfile.gettempdir()) / f"storywink-page-profile-{uuid.uuid4().hex[:6]}.txt"
    kept.write_bytes(raw.read_bytes())
    return [f"profile by library: {libraries}", f"profile by stage: {stages}", f"raw: {kept}"]


async def _sdk_calls(bench: Rig, count: int) -> _Measured:
    """The floor's SDK part: `bench/floor.py` in a worker's environment."""
    env = bench.worker_env("bench-floor", {})
    command = [sys.executable, "-m", "bench.floor", str(count), str(CONCURRENCY), bench.photos[0]]
    done = await asyncio.to_thread(
        subprocess.run, command, cwd=ROOT, env=env, capture_output=True, check=True, timeout=120
    )
    figures = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return _Measured(figures["seconds"], figures["cpu_seconds"])


async def _bare_fan_out(client: Client, count: int, server: int) -> _Measured:
    """A workflow fanning out `count` no-ops (after a warm-up run): seconds and CPU."""
    queue = f"bench-fanout-{uuid.uuid4().hex[:8]}"
    activities = f"{queue}-activities"
    async with (
        Worker(client, task_queue=queue, workflows=[FanOut]),
        Worker(
            client,
            task_queue=activities,
            activities=[noop],
            max_concurrent_activities=CONCURRENCY,
        ),
    ):
        measured = _Measured(0.0, 0.0)
        for n in (WARM_UP, count):
            started = time.monotonic()
            cpu, server_cpu = cpu_seconds(os.getpid()), cpu_seconds(server)
            await client.execute_workflow(
                FanOut.run,
                args=[n, activities],
                id=f"{queue}-{n}",
                task_queue=queue,
            )
            measured = _Measured(
                time.monotonic() - started,
                cpu_seconds(os.getpid()) - cpu,
                cpu_seconds(server) - server_cpu,
            )
    return measured
