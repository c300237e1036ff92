"""Who gets a worker's next slot of the image model's quota: its waiting calls' order.

Temporal hands a worker pages fairly, but a worker holds several at once, and they used to
wait for the model in the order they were taken; a small book's page then queued behind the
big book's. Now the slot goes to the best call waiting in the process *when the slot comes*:
the lowest priority key first (Temporal's: 1 first, unset = 3), then the owner (Temporal's
fairness key) served least, then the earliest arrival.

An owner's count starts level with the least-served owner waiting when it arrives, so one
who arrives late neither overtakes everybody until it has caught up nor starves.
Pure bookkeeping, no clock and no asyncio: `storywink.quota.limiter` drives it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

T = TypeVar("T")
DEFAULT_PRIORITY_KEY: Final = 3  # Temporal's default (the middle of 1..5)


@dataclass(frozen=True)
class Ticket(Generic[T]):
    item: T
    priority_key: int
    owner: str
    arrival: int


class LocalQueue(Generic[T]):
    def __init__(self) -> None:
        self._waiting: dict[int, Ticket[T]] = {}  # by arrival
        self._served: dict[str, int] = {}
        self._arrivals = itertools.count()

    def __len__(self) -> int:
        return len(self._waiting)

    def join(self, item: T, priority_key: int | None = None, owner: str | None = None) -> Ticket[T]:
        owner = owner or ""
        waiting = self._waiting_owners()
        if owner not in waiting and waiting:
            floor = min(self._served.get(o, 0) for o in waiting)
            self._served[owner] = max(self._served.get(owner, 0), floor)
        ticket = Ticket(item, priority_key or DEFAULT_PRIORITY_KEY, owner, next(self._arrivals))
        self._waiting[ticket.arrival] = ticket
        return ticket

    def leave(self, ticket: Ticket[T]) -> None:
        self._waiting.pop(ticket.arrival, None)
        self._forget_idle()

    def pop(self) -> T | None:
        """The best waiting call's item, counted as served; None when nobody waits."""
        if not self._waiting:
            return None
        best = min(
            self._waiting.values(),
            key=lambda t: (t.priority_key, self._served.get(t.owner, 0), t.arrival),
        )
        del self._waiting[best.arrival]
        self._served[best.owner] = self._served.get(best.owner, 0) + 1
        self._forget_idle()
        return best.item

    def _waiting_owners(self) -> set[str]:
        return {ticket.owner for ticket in self._waiting.values()}

    def _forget_idle(self) -> None:
        """Drop the counts of owners not waiting that a return would raise to the floor
        anyway (all of them once nobody waits): the counts stay as few as the owners."""
        waiting = self._waiting_owners()
        floor = min((self._served.get(o, 0) for o in waiting), default=None)
        self._served = {
            owner: served
            for owner, served in self._served.items()
            if owner in waiting or (floor is not None and served > floor)
        }
