"""A page worker takes a page only shortly before a slot of the shared quota it holds
(storywink.quota.admission): the slot reserved before the poll is the one the page's call
gets, one poll at a time holds a slot, a held slot is never used late, and the worker's
concurrency still bounds its pages."""

from __future__ import annotations

import asyncio
import uuid
from types import SimpleNamespace
from typing import cast

import pytest
from temporalio.worker import SlotMarkUsedContext, SlotReleaseContext, SlotReserveContext

from storywink.db.connection import Database
from storywink.quota import slots as quota
from storywink.quota.admission import QuotaPermit, QuotaSlotSupplier
from storywink.quota.limiter import LATE_SECONDS, SharedLimiter
from tests.quota.test_quota_limiter import FakeClock

PER_MINUTE = 600.0
GAP = 60 / (PER_MINUTE * (1 - quota.HEADROOM))
LEAD = 0.5
RESERVE = cast(SlotReserveContext, SimpleNamespace(slot_type="activity", task_queue="pages"))


def _limiter(database: Database) -> tuple[FakeClock, SharedLimiter]:
    clock = FakeClock()
    name = f"test-{uuid.uuid4().hex[:8]}"
    return clock, SharedLimiter(
        database.sessions, PER_MINUTE, name=name, clock=clock, sleep=clock.sleep
    )


def _used(permit: object) -> SlotMarkUsedContext:
    return cast(SlotMarkUsedContext, SimpleNamespace(permit=permit, slot_info=None))


def _released(permit: object, used: bool = True) -> SlotReleaseContext:
    return SlotReleaseContext(slot_info=cast(object, "page") if used else None, permit=permit)  # type: ignore[arg-type]


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_the_slot_held_for_a_page_is_the_one_its_call_gets(database: Database) -> None:
    clock, limiter = _limiter(database)
    held = await limiter.reserve_ahead(LEAD)
    assert held.at == pytest.approx(clock.now + LEAD)
    limiter.offer(held)
    assert await asyncio.wait_for(limiter.acquire(None, "parent-a"), timeout=5) == held
    following = await limiter.reserve_ahead(0.0)
    assert following.at == pytest.approx(held.at + GAP)  # no slot reserved on the way
    assert limiter.dropped == 0


async def test_a_held_slot_its_page_reaches_late_is_dropped_and_never_used_late(
    database: Database,
) -> None:
    clock, limiter = _limiter(database)
    held = await limiter.reserve_ahead(LEAD)
    limiter.offer(held)
    async with asyncio.timeout(5):  # the slot comes (the fake clock runs to it); no call yet
        while clock.now < held.at:  # noqa: ASYNC110 (a fake clock, no event to wait on)
            await asyncio.sleep(0.01)
    await _settle()
    clock.now = held.at + 2 * LATE_SECONDS
    slot = await asyncio.wait_for(limiter.acquire(None, "parent-a"), timeout=5)
    assert slot != held
    assert slot.at >= held.at + 2 * LATE_SECONDS
    assert limiter.dropped == 1


async def test_a_page_that_arrives_after_its_held_slot_does_not_use_it(
    database: Database,
) -> None:
    clock, limiter = _limiter(database)
    held = await limiter.reserve_ahead(LEAD)
    clock.now = held.at + 1.0  # the poll brought the page long after (an idle queue)
    limiter.offer(held)
    slot = await asyncio.wait_for(limiter.acquire(), timeout=5)
    assert slot.at >= clock.now - GAP
    assert limiter.dropped == 1


async def test_one_poll_at_a_time_holds_a_slot_and_its_page_gets_it(database: Database) -> None:
    clock, limiter = _limiter(database)
    supplier = QuotaSlotSupplier(limiter, concurrency=3, lead=LEAD)
    first = await asyncio.wait_for(supplier.reserve_slot(RESERVE), timeout=5)
    assert isinstance(first, QuotaPermit) and first.slot is not None
    assert clock.now == pytest.approx(first.slot.at - LEAD)  # polls only LEAD before it
    second = asyncio.create_task(supplier.reserve_slot(RESERVE))
    await _settle()
    assert not second.done()  # the first poll has not brought a page yet
    supplier.mark_slot_used(_used(first))
    permit = await asyncio.wait_for(second, timeout=5)
    assert isinstance(permit, QuotaPermit) and permit.slot is not None
    assert permit.slot.at >= first.slot.at + GAP  # and LEAD after the reservation
    assert await asyncio.wait_for(limiter.acquire(), timeout=5) == first.slot


async def test_the_concurrency_bounds_the_pages_and_a_release_frees_a_slot(
    database: Database,
) -> None:
    _, limiter = _limiter(database)
    supplier = QuotaSlotSupplier(limiter, concurrency=1, lead=LEAD)
    first = await asyncio.wait_for(supplier.reserve_slot(RESERVE), timeout=5)
    supplier.mark_slot_used(_used(first))
    second = asyncio.create_task(supplier.reserve_slot(RESERVE))
    await _settle()
    assert not second.done()  # the one page runs
    supplier.release_slot(_released(first))
    await asyncio.wait_for(second, timeout=5)


async def test_a_poll_that_brought_no_page_counts_its_slot_unused(database: Database) -> None:
    _, limiter = _limiter(database)
    supplier = QuotaSlotSupplier(limiter, concurrency=2, lead=LEAD)
    permit = await asyncio.wait_for(supplier.reserve_slot(RESERVE), timeout=5)
    supplier.release_slot(_released(permit, used=False))
    await _settle()
    assert limiter.dropped == 1
    await asyncio.wait_for(supplier.reserve_slot(RESERVE), timeout=5)  # the next poll goes


async def test_a_page_an_idle_poll_brought_is_served_before_the_next_polls_page(
    database: Database,
) -> None:
    # Three idle workers' polls each hand over a page when a book starts, long after the
    # slots they held: those pages must get the next slots, not the polls that follow.
    clock, limiter = _limiter(database)
    supplier = QuotaSlotSupplier(limiter, concurrency=2, lead=LEAD)
    idle = await asyncio.wait_for(supplier.reserve_slot(RESERVE), timeout=5)
    clock.now += 60.0  # no page for a minute, then one
    supplier.mark_slot_used(_used(idle))
    following = await asyncio.wait_for(supplier.reserve_slot(RESERVE), timeout=5)
    assert isinstance(following, QuotaPermit) and following.slot is not None
    page = await asyncio.wait_for(limiter.acquire(None, "parent-a"), timeout=5)
    assert page.at < following.slot.at
    assert limiter.dropped == 1  # the idle poll's slot, a minute ago
