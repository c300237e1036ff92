"""When a page worker takes a page: shortly before a slot of the shared quota it holds.

A worker with free slots used to take pages at once and park them in its own queue until
the quota could serve them; the server's fair order (fairness key, priority) then only
decided among the pages not yet taken, and a big book's pages held the workers. Here the
page poller's activity slots come from `QuotaSlotSupplier`, a Temporal `CustomSlotSupplier`:
before each poll it reserves the fleet's next model slot (`SharedLimiter.reserve_ahead`)
and lets the poll go only `LEAD_SECONDS` before that slot. Unserved pages so wait in the
server's queue, in its fair order, until a slot is about to come.

At most one poll per worker holds a slot while it waits, and while the queue is idle one
poll in the fleet (per version) waits at all (storywink.quota.idle_poll): when a book
arrives after a pause one worker takes its first page and the rest wait in the server's
backlog. That page's held slot is past when it comes: a slot is reserved for it at once,
before the worker's next poll reserves one, so the page taken first is served first.
`ILLUSTRATION_CONCURRENCY` still bounds the pages a worker runs at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Final

from temporalio.worker import (
    CustomSlotSupplier,
    SlotMarkUsedContext,
    SlotPermit,
    SlotReleaseContext,
    SlotReserveContext,
)

from storywink.quota.idle_poll import IdlePollTurn
from storywink.quota.limiter import SharedLimiter
from storywink.quota.slots import Slot

log = logging.getLogger(__name__)

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
        self,
        limiter: SharedLimiter,
        concurrency: int,
        lead: float = LEAD_SECONDS,
        idle_turn: IdlePollTurn | None = None,
    ) -> None:
        self._limiter = limiter
        self._lead = lead
        self._free = asyncio.Semaphore(concurrency)
        self._one_poll = asyncio.Lock()
        self._idle_turn = idle_turn
        self._idle = True  # no page yet, or the last poll brought none
        self._background: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def reserve_slot(self, ctx: SlotReserveContext) -> SlotPermit:
        self._loop = asyncio.get_running_loop()
        await self._free.acquire()
        try:
            await self._one_poll.acquire()
            try:
                if self._idle and self._idle_turn is not None:
                    await self._idle_turn.wait()
                slot = await self._held_slot()
                if slot is not None:
                    await self._limiter.wait_until(slot.at - self._lead)
            except BaseException:
                self._leave_idle_turn()  # the worker stops (or the database failed)
                self._one_poll.release()
                raise
        except BaseException:
            self._free.release()
            raise
        return QuotaPermit(slot)

    def _leave_idle_turn(self) -> None:
        if self._idle_turn is not None:
            self._idle_turn.leave()

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

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
        self._idle = False  # it polls freely while pages come
        self._leave_idle_turn()
        if isinstance(permit, QuotaPermit) and permit.slot is not None:
            if self._limiter.is_past(permit.slot):
                # The poll waited on an idle queue: the page's slot is reserved before the
                # next poll reserves one, so the pages taken first are served first.
                self._in_background(self._replace(permit, permit.slot))
                return
            self._limiter.offer(permit.slot)
        self._poll_done(permit)

    async def _replace(self, permit: QuotaPermit, slot: Slot) -> None:
        try:
            await self._limiter.replace(slot, self._lead)
        except Exception:  # the database: the page's call reserves (and reports) it
            log.warning("could not reserve a slot for a page taken after its held slot")
        finally:
            self._poll_done(permit)

    def _poll_done(self, permit: SlotPermit) -> None:
        if isinstance(permit, QuotaPermit) and permit.polling:
            permit.polling = False
            self._one_poll.release()

    def _released(self, permit: SlotPermit) -> None:
        if isinstance(permit, QuotaPermit) and permit.polling:  # the poll brought no page
            self._idle = True  # so it asks for the idle turn before the next
            self._leave_idle_turn()
            if permit.slot is not None:
                self._limiter.forgo(permit.slot)
        self._poll_done(permit)
        self._free.release()
