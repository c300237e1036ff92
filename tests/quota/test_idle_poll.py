"""An idle fleet keeps one page poll waiting (storywink.quota.idle_poll): the other idle
workers of its version wait until a page comes to it, a dead holder's turn expires, another
version's workers are never held up, and a worker that just took a page polls freely."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from types import SimpleNamespace
from typing import cast

import pytest
from temporalio.worker import (
    SlotMarkUsedContext,
    SlotPermit,
    SlotReleaseContext,
    SlotReserveContext,
)

from storywink.db.connection import Database
from storywink.quota.admission import QuotaSlotSupplier
from storywink.quota.idle_poll import EXPIRES_SECONDS, IdlePollTurn
from storywink.quota.limiter import SharedLimiter
from tests.quota.test_quota_limiter import FakeClock

pytestmark = pytest.mark.each_database  # the turn is one conditional UPDATE on each
PER_MINUTE = 600.0
RESERVE = cast(SlotReserveContext, SimpleNamespace(slot_type="activity", task_queue="pages"))


class Fleet:
    """Workers sharing one limiter row, on one fake clock."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.clock = FakeClock()
        self.name = f"test-{uuid.uuid4().hex[:8]}"

    def limiter(self) -> SharedLimiter:
        return SharedLimiter(
            self.database.sessions,
            PER_MINUTE,
            name=self.name,
            clock=self.clock,
            sleep=self.clock.sleep,
        )

    def turn(self, version: str | None = None) -> IdlePollTurn:
        return IdlePollTurn(self.limiter(), version, clock=self.clock)

    def worker(self, version: str | None = None) -> QuotaSlotSupplier:
        return QuotaSlotSupplier(self.limiter(), concurrency=2, idle_turn=self.turn(version))


def _used(permit: object) -> SlotMarkUsedContext:
    return cast(SlotMarkUsedContext, SimpleNamespace(permit=permit, slot_info=None))


async def _polls_only_after(
    holder: QuotaSlotSupplier, other: QuotaSlotSupplier, ends: Callable[[SlotPermit], None]
) -> None:
    """`holder` polls the idle queue; `other` waits (several checks) until `ends` is done
    with the holder's permit, then polls."""
    polling = await asyncio.wait_for(holder.reserve_slot(RESERVE), timeout=5)
    waiting = asyncio.create_task(other.reserve_slot(RESERVE))
    await asyncio.sleep(0.8)
    assert not waiting.done()  # one poll waits on the idle queue, not two
    ends(polling)
    await asyncio.wait_for(waiting, timeout=3)


async def test_one_idle_worker_polls_and_the_next_polls_once_a_page_came_to_it(
    database: Database,
) -> None:
    fleet = Fleet(database)
    first, second = fleet.worker(), fleet.worker()
    # A book came: its first page to the first worker.
    await _polls_only_after(first, second, lambda permit: first.mark_slot_used(_used(permit)))


async def test_a_dead_holders_turn_expires_and_another_worker_takes_it(
    database: Database,
) -> None:
    fleet = Fleet(database)
    await fleet.limiter().make_row()
    dead, alive = fleet.turn(), fleet.turn()
    assert await dead.take() and dead.held
    assert not await alive.take()
    fleet.clock.now += EXPIRES_SECONDS + 1.0  # the holder stopped renewing
    assert await alive.take() and alive.held
    assert not await dead.renew()  # and the old holder, if it comes back, knows


async def test_another_versions_workers_are_not_held_up_by_this_versions_turn(
    database: Database,
) -> None:
    fleet = Fleet(database)
    await fleet.limiter().make_row()
    old, new, old_too = fleet.turn("build-1"), fleet.turn("build-2"), fleet.turn("build-1")
    assert await old.take()
    assert await new.take() and not new.held  # polls: only its own version takes its pages
    assert not await old_too.take()


async def test_a_worker_whose_last_poll_brought_a_page_polls_while_another_holds_the_turn(
    database: Database,
) -> None:
    fleet = Fleet(database)
    busy, idle = fleet.worker(), fleet.worker()
    taken = await asyncio.wait_for(busy.reserve_slot(RESERVE), timeout=5)
    busy.mark_slot_used(_used(taken))  # its page came: it gives the turn up
    await asyncio.wait_for(idle.reserve_slot(RESERVE), timeout=3)  # holds the turn now
    await asyncio.wait_for(busy.reserve_slot(RESERVE), timeout=1)  # under load, no waiting


async def test_a_poll_that_came_back_empty_or_stopped_gives_the_turn_up(
    database: Database,
) -> None:
    # Held only while a poll waits: a page worker that stops (its poll cancelled, as a
    # fleet pause does) or whose poll timed out never keeps the others waiting.
    fleet = Fleet(database)
    stopping, other = fleet.worker(), fleet.worker()

    def stop(permit: SlotPermit) -> None:
        stopping.release_slot(SlotReleaseContext(slot_info=None, permit=permit))

    await _polls_only_after(stopping, other, stop)
