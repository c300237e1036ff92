"""`python -m bench [--quick] [NAME ...]`: run the benchmarks, print their tables, and write
`bench/results/<name>.json`. All of them when no name is given."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from temporalio.client import Client

from bench import (
    adaptive,
    fair,
    ledger,
    makespan,
    memory,
    page_db,
    quota,
    recovery,
    throughput,
    web,
)
from bench.harness import LOCAL_HOSTS, temporal_server
from bench.report import RESULTS_DIR, BenchResult, format_table, write_json
from storywink.worker.process import exit_process

Bench = Callable[[Client, bool], Awaitable[BenchResult]]

BENCHES: dict[str, Bench] = {
    "makespan": makespan.run,
    "quota": quota.run,
    "recovery": recovery.run,
    "adaptive": adaptive.run,
    "fair": fair.run,
    "throughput": throughput.run,
    "memory": memory.run,
    "web": web.run,
    "ledger": ledger.run,
    "page_db": page_db.run,
}
# Upper bounds, well above a normal run on a loaded 2-core machine.
TIME_LIMIT_SECONDS = {"full": 360.0, "quick": 90.0}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help=f"any of {', '.join(BENCHES)} (default: all)"
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run of about a minute")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    if unknown := [name for name in args.names if name not in BENCHES]:
        parser.error(f"unknown bench {', '.join(unknown)}; choose from {', '.join(BENCHES)}")
    return args


async def run_all(names: list[str], quick: bool, results_dir: Path) -> int:
    limit = TIME_LIMIT_SECONDS["quick" if quick else "full"]
    failures = 0
    async with temporal_server() as client:
        for name in names:
            started = time.monotonic()
            try:
                async with asyncio.timeout(limit):
                    result = await BENCHES[name](client, quick)
            except Exception as exc:
                failures += 1
                print(f"== {name}: FAILED after {time.monotonic() - started:.0f}s: {exc!r}\n")
                continue
            seconds = time.monotonic() - started
            path = write_json(result, quick=quick, seconds=seconds, directory=results_dir)
            print(format_table(result))
            print(f"   ({seconds:.0f}s, {path})\n")
    return failures


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = LOCAL_HOSTS
    logging.basicConfig(level=logging.WARNING)
    names = args.names or list(BENCHES)
    started = time.monotonic()
    failures = asyncio.run(run_all(names, args.quick, args.results_dir))
    print(f"{len(names) - failures}/{len(names)} benches done in {time.monotonic() - started:.0f}s")
    return 1 if failures else 0


if __name__ == "__main__":
    exit_process(main(sys.argv[1:]))  # the SDK's runtime can abort the interpreter's finalization
