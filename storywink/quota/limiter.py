"""The image model's limiter, shared by every worker through one database row.

Each change is one short transaction: take the row's lock (an UPDATE, so SQLite takes its
write lock at once and PostgreSQL locks the row), read it, apply `storywink.quota.slots`, write
it back. At an image model's rates (a few calls a second at most) that is nothing for
either database.

Within a process the waiting calls form a local queue (`storywink.quota.queue`) and the
process holds at most one reservation in the row: when that slot comes, it goes to the best
call waiting at that moment (priority, then the owner served least, then arrival), so a page
taken later can still go first.

A page worker also reserves slots *before* it takes a page (`reserve_ahead`, from
`storywink.quota.admission`): it polls Temporal for a page only shortly before a slot it
holds, and the page's call gets that slot (`offer`). A held slot the page does not reach in
time is dropped, never used late (a late call squeezes the next ones into the provider's
window), and the call reserves anew.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from storywink.db.engine import in_session
from storywink.db.models import ModelQuota
from storywink.quota import slots as quota
from storywink.quota.queue import LocalQueue

T = TypeVar("T")
log = logging.getLogger("storywink.quota")
DEFAULT_NAME: Final = "image-model"
# Re-check a long wait this often: a 429 elsewhere may void the slot meanwhile.
RECHECK_SECONDS: Final = 5.0
# The last check comes this long before the slot; after the final sleep nothing but the
# model call follows (a call late by more than the headroom costs a 429).
FINAL_SECONDS: Final = 0.25
# A slot reserved ahead is used at most this late: the limiter's headroom (1 % of a window)
# is all the lateness the provider's window absorbs.
LATE_SECONDS: Final = 0.02


class SharedLimiter:
    """`await limiter.acquire(...)` before a model call; `rejected(slot, delay)` after a 429."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        per_minute: float,
        name: str = DEFAULT_NAME,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._sleep = sleep
        self._sessions = sessions
        self._limit = per_minute
        self._name = name
        self._clock = clock
        self._waiting: LocalQueue[asyncio.Future[quota.Slot]] = LocalQueue()
        self._dispatcher: asyncio.Task[None] | None = None
        # Slots reserved ahead whose pages have arrived (`offer`), each served on its own,
        # and slots that came with no call waiting: kept LATE_SECONDS, then dropped.
        self._serving: set[asyncio.Task[None]] = set()
        self._ready: list[quota.Slot] = []
        self.dropped = 0  # slots reserved and never used: quota lost

    @property
    def name(self) -> str:
        """The limiter's row: the fleet's workers of one model share it."""
        return self._name

    @property
    def sessions(self) -> sessionmaker[Session]:
        return self._sessions

    async def make_row(self) -> None:
        """Make the shared row now if no worker has yet (the first slot would make it)."""

        def make(session: Session) -> None:
            self._locked_row(session)
            session.commit()

        await in_session(self._sessions, make)

    async def wait_until(self, at: float) -> None:
        """Sleep until `at` on the slots' clock."""
        if (wait := at - self._clock()) > 0:
            await self._sleep(wait)

    async def reserve_ahead(self, lead: float) -> quota.Slot:
        """A slot for a page not yet taken, at least `lead` seconds from now: the time the
        page needs from the poll to its model call."""
        return await self._apply(lambda state, now: quota.reserve(state, self._limit, now + lead))

    def offer(self, slot: quota.Slot) -> None:
        """A slot reserved ahead whose page has arrived: at its time it goes to the best
        call waiting, as the slots this limiter reserves itself do."""
        if self.is_past(slot):
            self._drop(1, "its page came after it")
            return
        serving = asyncio.create_task(self._serve(slot))
        self._serving.add(serving)
        serving.add_done_callback(self._serving.discard)

    def is_past(self, slot: quota.Slot) -> bool:
        """Too late to use: its page came after it (the poll holding it waited on an idle
        queue)."""
        return slot.at < self._clock() - LATE_SECONDS

    async def replace(self, slot: quota.Slot, lead: float) -> None:
        """A past held slot whose page has just arrived: a slot at least `lead` from now (the
        time the page needs to reach its call) is reserved for it at once and held for it as
        `offer` holds one, so the page is served before the pages of polls that reserve
        after it (not after them, when its call reserves its own)."""
        self._drop(1, "its page came after it")
        self.offer(await self.reserve_ahead(lead))

    def forgo(self, slot: quota.Slot) -> None:
        """A slot reserved ahead whose poll brought no page."""
        self._drop(1, "the poll holding it brought no page")

    async def acquire(
        self, priority_key: int | None = None, fairness_key: str | None = None
    ) -> quota.Slot:
        """Wait for a slot of the shared rate; returns it (to report a 429 against).
        `priority_key` and `fairness_key` are the calling activity's Temporal Priority."""
        granted: asyncio.Future[quota.Slot] = asyncio.get_running_loop().create_future()
        ticket = self._waiting.join(granted, priority_key, fairness_key)
        if (ready := self._take_ready()) is not None:
            self._hand_over(ready)
        self._wake_dispatcher()
        try:
            return await granted
        except asyncio.CancelledError:
            self._waiting.leave(ticket)
            if granted.done() and not granted.cancelled() and granted.exception() is None:
                self._hand_over(granted.result())  # the slot came as the caller went away
            raise

    def _wake_dispatcher(self) -> None:
        if len(self._waiting) > len(self._serving) and (
            self._dispatcher is None or self._dispatcher.done()
        ):
            self._dispatcher = asyncio.create_task(self._dispatch())

    async def _dispatch(self) -> None:
        """While more calls wait than slots held for them: reserve one slot, wait for it,
        give it to the best waiter."""
        while len(self._waiting) > len(self._serving):
            await self._serve(None)

    async def _serve(self, held: quota.Slot | None) -> None:
        """Wait for `held` (or a slot reserved now), then give it to the best waiter."""
        try:
            slot = await self._until(held if held is not None else await self._reserve())
        except Exception as exc:  # the database: the call that was next fails with it
            if (waiter := self._next_waiter()) is not None:
                waiter.set_exception(exc)
            return
        self._hand_over(slot)
        if held is not None:
            self._wake_dispatcher()

    def _hand_over(self, slot: quota.Slot) -> None:
        if (waiter := self._next_waiter()) is not None:
            waiter.set_result(slot)
        else:  # its page is not at its call yet (or went away): a call just late takes it
            self._ready.append(slot)

    def _take_ready(self) -> quota.Slot | None:
        """The earliest slot that came with no call waiting, unless it is past."""
        now = self._clock()
        fresh = sorted((s for s in self._ready if s.at >= now - LATE_SECONDS), key=lambda s: s.at)
        if len(fresh) < len(self._ready):
            self._drop(len(self._ready) - len(fresh), "no call came for it in time")
        self._ready = fresh[1:]
        return fresh[0] if fresh else None

    def _drop(self, count: int, why: str) -> None:
        self.dropped += count
        log.info("%d slot(s) of the image model's quota unused: %s", count, why)

    def _next_waiter(self) -> asyncio.Future[quota.Slot] | None:
        while (waiter := self._waiting.pop()) is not None:
            if not waiter.done():  # else cancelled, its task not yet out of the queue
                return waiter
        return None

    async def _until(self, slot: quota.Slot) -> quota.Slot:
        """Sleep until `slot` (or the slot reserved again if a 429 elsewhere voids it). The
        epoch is checked before the final short sleep, not after: a call that reaches the
        model late by more than the headroom costs a 429."""
        while (wait := slot.at - self._clock()) > FINAL_SECONDS:
            await self._sleep(min(wait - FINAL_SECONDS, RECHECK_SECONDS))
            if not await in_session(self._sessions, self._still_valid, slot):
                slot = await self._reserve()
        if wait > 0:
            await self._sleep(wait)
        return slot

    async def _reserve(self) -> quota.Slot:
        return await self._apply(lambda state, now: quota.reserve(state, self._limit, now))

    async def rejected(self, slot: quota.Slot, retry_after: float | None) -> None:
        """The model answered 429 to the call made in `slot`."""

        def lower(state: quota.QuotaState, now: float) -> tuple[quota.QuotaState, None]:
            new = quota.rejected(state, self._limit, now, slot, retry_after)
            if new is not state:
                log.warning(
                    "image model answered 429: fleet rate lowered to %.1f/min, paused %.1fs",
                    new.rate or 0.0,
                    new.next_free - now,
                )
            return new, None

        await self._apply(lower)

    def _still_valid(self, session: Session, slot: quota.Slot) -> bool:
        epoch = session.scalar(select(ModelQuota.epoch).where(ModelQuota.name == self._name))
        return epoch is None or epoch == slot.epoch

    async def _apply(
        self, change: Callable[[quota.QuotaState, float], tuple[quota.QuotaState, T]]
    ) -> T:
        return await in_session(self._sessions, self._locked_change, change)

    def _locked_change(
        self,
        session: Session,
        change: Callable[[quota.QuotaState, float], tuple[quota.QuotaState, T]],
    ) -> T:
        row = self._locked_row(session)
        new, result = change(_state_of(row), self._clock())
        row.rate, row.overrun, row.next_free = new.rate, new.overrun, new.next_free
        row.hold_until, row.epoch, row.far = new.hold_until, new.epoch, new.far
        row.early_at = new.early_at
        session.commit()
        return result

    def _locked_row(self, session: Session) -> ModelQuota:
        for _ in range(2):
            locked = session.execute(
                update(ModelQuota)
                .where(ModelQuota.name == self._name)
                .values(epoch=ModelQuota.epoch)
                .execution_options(synchronize_session=False)
            )
            if locked.rowcount:  # type: ignore[attr-defined]
                row = session.get(ModelQuota, self._name, populate_existing=True)
                if row is not None:
                    return row
            session.add(
                ModelQuota(name=self._name, next_free=0.0, hold_until=0.0, epoch=0, early_at=0.0)
            )
            try:
                session.commit()
            except IntegrityError:  # another worker created it first
                session.rollback()
        raise RuntimeError(f"model_quota row {self._name!r} could not be created")


def _state_of(row: ModelQuota) -> quota.QuotaState:
    return quota.QuotaState(
        rate=row.rate,
        overrun=row.overrun,
        next_free=row.next_free,
        hold_until=row.hold_until,
        epoch=row.epoch,
        far=row.far,
        early_at=row.early_at,
    )
