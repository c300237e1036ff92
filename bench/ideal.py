"""The ideal schedule `bench fair` measures against: what a perfect scheduler gives under
the same quota, model latency, book sizes and arrival times.

One model call per slot (60 / quota seconds apart), every slot used while a page waits; at
each slot the page taken is of the lowest priority key waiting, and within it of the owner
served least recently at that priority (an owner not served yet first, then by arrival):
per-owner round-robin, priority first. A page is done one latency after its slot; a book
when its last page is.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Book:
    arrival: float  # seconds from the first book's start
    pages: int
    owner: str
    priority_key: int = 3


def ideal_finish_times(books: list[Book], quota_per_minute: float, latency: float) -> list[float]:
    """Each book's finish time (seconds from the first book's start), in `books`' order."""
    return ideal_schedule(books, quota_per_minute, latency)[0]


def ideal_schedule(
    books: list[Book], quota_per_minute: float, latency: float
) -> tuple[list[float], list[int]]:
    """Each book's finish time, and the book (its index) each slot served."""
    interval = 60.0 / quota_per_minute
    left = [book.pages for book in books]
    finish = [0.0] * len(books)
    first_seen = {book.owner: n for n, book in reversed(list(enumerate(books)))}
    last_served: dict[tuple[int, str], float] = {}
    slot: float | None = None
    served: list[int] = []
    while any(left):
        next_arrival = min(book.arrival for book, n in zip(books, left, strict=True) if n)
        slot = next_arrival if slot is None else max(slot + interval, next_arrival)
        waiting = [n for n, book in enumerate(books) if left[n] and book.arrival <= slot]
        level = min(books[n].priority_key for n in waiting)

        def turn(n: int, level: int = level) -> tuple[float, int, float, int]:
            book = books[n]
            served = last_served.get((level, book.owner), float("-inf"))
            return served, first_seen[book.owner], book.arrival, n

        chosen = min((n for n in waiting if books[n].priority_key == level), key=turn)
        last_served[(level, books[chosen].owner)] = slot
        served.append(chosen)
        left[chosen] -= 1
        if not left[chosen]:
            finish[chosen] = slot + latency
    return finish, served


def work_conserving_bound(books: list[Book], quota_per_minute: float, latency: float) -> float:
    """The issue's yardstick for the big book: all pages at the quota, plus one latency
    (one slot more than the ideal's last page, whose first slot is at 0)."""
    pages = sum(book.pages for book in books)
    return pages * 60.0 / quota_per_minute + latency
