"""The image model's limiter, shared by every worker through one database row.

Each change is one short transaction: take the row's lock (an UPDATE, so SQLite takes its
write lock at once and PostgreSQL locks the row), read it, apply `storywink.quota`, write
it back. A worker's model call costs two or three such transactions; at an image model's
rates (a few calls a second at most) that is nothing for either database.
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

from storywink import quota
from storywink.db.engine import in_session
from storywink.db.models import ModelQuota

T = TypeVar("T")
log = logging.getLogger("storywink.quota")
DEFAULT_NAME: Final = "image-model"
# Re-check a long wait this often: a 429 elsewhere may void the slot meanwhile.
RECHECK_SECONDS: Final = 5.0


class SharedLimiter:
    """`await limiter.acquire()` before a model call; `rejected(slot, delay)` after a 429."""

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

    async def acquire(self) -> quota.Slot:
        """Wait for a slot of the shared rate; returns it (to report a 429 against)."""
        slot = await self._reserve()
        while True:
            wait = slot.at - self._clock()
            if wait > 0:
                await self._sleep(min(wait, RECHECK_SECONDS))
            if not await in_session(self._sessions, self._still_valid, slot):
                slot = await self._reserve()  # a 429 elsewhere voided it
            elif slot.at <= self._clock():
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
