"""When a page worker takes a page: shortly before a slot of the shared quota it holds.

A worker with free slots used to take pages at once and park them in its own queue until
the quota could serve them; the server's fair order (fairness key, priority) then only
decided among the pages not yet taken, and a big book's pages held the workers. Here the
page poller's activity slots come from `QuotaSlotSupplier`, a Temporal `CustomSlotSupplier`:
before each poll it reserves the fleet's next model slot (`SharedLimiter.reserve_ahead`)
and lets the poll go only `LEAD_SECONDS` before that slot. Unserved pages so wait in the
server's queue, in its fair order, until a slot is about to come.

At most one poll per worker holds a slot while it waits: an idle fleet wastes one slot per
worker, and when a book arrives after a pause each worker takes one page, not as many as
it has pollers. `ILLUSTRATION_CONCURRENCY` still bounds the pages a worker runs at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from temporalio.worker import (
    CustomSlotSupplier,
    SlotMarkUsedContext,
    SlotPermit,
    SlotReleaseContext,
    SlotReserveContext,
)

from storywink.quota.limiter import SharedLimiter
from storywink.quota.slots import Slot

# From the poll to the page's model call: the poll's answer, the settled-page check, the
# photo and style fetches, the ledger row. A held slot the call reaches later is dropped.
LEAD_SECONDS: Final = 0.5


@dataclass
class QuotaPermit(SlotPermit):
    slot: Slot | None  # None when the limiter could not be reached: the call reserves later
    polling: bool = True  # handed to a poll that has not brought a page yet


class QuotaSlotSupplier(CustomSlotSupplier):
    """The page worker's activity slots: `concurrency` at most, each reserved with a slot
    of the shared quota (`storywink.quota.limiter`)."""

    def __init__(
        self, limiter: SharedLimiter, concurrency: int, lead: float = LEAD_SECONDS
    ) -> None:
        self._limiter = limiter
        self._lead = lead
        self._free = asyncio.Semaphore(concurrency)
        self._one_poll = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def reserve_slot(self, ctx: SlotReserveContext) -> SlotPermit:
        self._loop = asyncio.get_running_loop()
        await self._free.acquire()
        try:
            await self._one_poll.acquire()
            try:
                slot = await self._held_slot()
                if slot is not None:
                    await self._limiter.wait_until(slot.at - self._lead)
            except BaseException:
                self._one_poll.release()
                raise
        except BaseException:
            self._free.release()
            raise
        return QuotaPermit(slot)

    async def _held_slot(self) -> Slot | None:
        try:
            return await self._limiter.reserve_ahead(self._lead)
        except Exception:  # the database: poll anyway, the call reserves (and reports) it
            return None

    def try_reserve_slot(self, ctx: SlotReserveContext) -> SlotPermit | None:
        return None  # no eager page tasks: the pages' queue is not the workflows'

    def mark_slot_used(self, ctx: SlotMarkUsedContext) -> None:
        # From the SDK's threads, before the page's activity starts (the loop runs this
        # callback before the activity's first step).
        self._on_loop(self._used, ctx.permit)

    def release_slot(self, ctx: SlotReleaseContext) -> None:
        self._on_loop(self._released, ctx.permit)

    def _on_loop(self, callback: Callable[[SlotPermit], None], permit: SlotPermit) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(callback, permit)

    def _used(self, permit: SlotPermit) -> None:
        if isinstance(permit, QuotaPermit) and permit.slot is not None:
            self._limiter.offer(permit.slot)
        self._poll_done(permit)

    def _poll_done(self, permit: SlotPermit) -> None:
        if isinstance(permit, QuotaPermit) and permit.polling:
            permit.polling = False
            self._one_poll.release()

    def _released(self, permit: SlotPermit) -> None:
        if isinstance(permit, QuotaPermit) and permit.polling and permit.slot is not None:
            self._limiter.forgo(permit.slot)
        self._poll_done(permit)
        self._free.release()
