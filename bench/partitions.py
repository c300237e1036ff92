"""Partitions: how close to the one-partition order a fair queue split in partitions can get.

`python -m bench.partitions`. A model, not a measurement: bench fair's books (a 30-page book
at slot 0; at slot 1 a priority-1 book of 3 pages and five other owners' 3-page books), one
model slot at a time, latency 2 slots. Each task is written to a random partition (as the
server writes a task), each slot's poll is served by a random partition that has work (as
polls forward to partitions with tasks), and every partition is a perfect fair queue of its
own: priority first, then the owner it served least, a newcomer before a busy owner. With
one partition that is the ideal schedule; with four, the big book, which has pages in
every partition, gets a turn in each one's rounds.

Printed: over RUNS seeds, the small books' median finish against the one-partition order's,
the median and the spread of that ratio, and the share of runs within 1.25 x (issue 23's
goal on stock partitions).
"""

from __future__ import annotations

import random
import statistics
from collections import Counter, defaultdict

BIG, SMALL, SMALL_BOOKS, LATENCY = 30, 3, 5, 2
RUNS = 2000
GOAL = 1.25


def small_median(partitions: int, seed: int) -> float:
    """The slot by which the median small book is done, under this many partitions."""
    rng = random.Random(seed)
    queues: list[dict[str, int]] = [defaultdict(int) for _ in range(partitions)]
    served: list[Counter[str]] = [Counter() for _ in range(partitions)]
    left: dict[str, int] = {}
    done: dict[str, int] = {}

    def write(owner: str, pages: int) -> None:
        left[owner] = pages
        for _ in range(pages):
            queues[rng.randrange(partitions)][owner] += 1

    write("B", BIG)
    for slot in range(BIG + SMALL * (SMALL_BOOKS + 1)):
        if slot == 1:
            write("P", SMALL)
            for n in range(SMALL_BOOKS):
                write(str(n), SMALL)
        with_work = [p for p in range(partitions) if any(queues[p].values())]
        priority = [p for p in with_work if queues[p]["P"]]
        p = rng.choice(priority or with_work)
        waiting = [owner for owner, count in queues[p].items() if count]
        owner = "P" if "P" in waiting else min(waiting, key=lambda o: (served[p][o], o == "B"))
        queues[p][owner] -= 1
        served[p][owner] += 1
        left[owner] -= 1
        if not left[owner]:
            done[owner] = slot + LATENCY
    return statistics.median(done[str(n)] for n in range(SMALL_BOOKS))


def main() -> None:
    one = small_median(1, 0)
    ratios = sorted(small_median(4, seed) / one for seed in range(RUNS))
    within = sum(ratio <= GOAL for ratio in ratios) / RUNS
    print(f"one partition: small books' median done at slot {one:g}")
    print(
        f"four partitions, {RUNS} runs: median {statistics.median(ratios):.2f} x, "
        f"10-90 % {ratios[RUNS // 10]:.2f}-{ratios[RUNS * 9 // 10]:.2f} x, "
        f"within {GOAL} x in {within:.0%} of runs"
    )


if __name__ == "__main__":
    main()
