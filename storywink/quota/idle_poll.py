"""The fleet's one waiting page poll: while the page queue is idle, one worker polls it.

A worker's page poll waits at the server until a page comes. If every idle worker kept
one waiting, a book arriving after a pause would have its first pages handed to all of
them at once (sync match): the last of them waits for a slot the ideal gives another book,
and pages handed over that way are never written to the server's backlog, so its fairness
counter never counts them, and the book's later pages tie with other parents' new books'
first ones and win on their older task ids. With one waiting poll, a book's first page
alone is handed over; the others wait in the backlog, in the server's fair order
(docs/quota.md, "The yardstick").

A worker whose last poll brought nothing (or that has brought no page yet) takes the turn
before it polls: it names itself in the limiter's row (`model_quota.idle_poller`) unless
another worker of its version is named there and renewed it within `EXPIRES_SECONDS`, in
which case it waits and asks again. The holder renews every `RENEW_SECONDS` while it
waits, and gives the turn up as soon as its poll brings a page; a worker that died is
passed over once its turn expires. Workers whose last poll brought a page poll freely:
under load nobody waits. Workers of another version (a deploy under way) are never held
up by this version's turn: theirs may be the only workers that can take their pages.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from typing import Final

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.orm import Session

from storywink.db.engine import in_session
from storywink.db.models import ModelQuota
from storywink.db.statements import execute
from storywink.quota.limiter import SharedLimiter

log = logging.getLogger(__name__)

RENEW_SECONDS: Final = 2.0
EXPIRES_SECONDS: Final = 6.0  # three renewals missed: the holder is gone
CHECK_SECONDS: Final = 0.25  # a waiting worker asks this often (a new book waits no longer)

_row = ModelQuota.name == bindparam("row_name")
_TAKE = (
    update(ModelQuota)
    .where(
        _row,
        or_(
            ModelQuota.idle_poller.is_(None),
            ModelQuota.idle_poller == bindparam("me"),
            ModelQuota.idle_poll_renewed.is_(None),
            ModelQuota.idle_poll_renewed < bindparam("expired"),
        ),
    )
    .values(idle_poller=bindparam("me"), idle_poll_renewed=bindparam("now"))
)
_HOLDER = select(ModelQuota.idle_poller).where(_row)
_RENEW = (
    update(ModelQuota)
    .where(_row, ModelQuota.idle_poller == bindparam("me"))
    .values(idle_poll_renewed=bindparam("now"))
)
_GIVE_UP = (
    update(ModelQuota)
    .where(_row, ModelQuota.idle_poller == bindparam("me"))
    .values(idle_poller=None, idle_poll_renewed=None)
)


class IdlePollTurn:
    """One worker's side of the turn, kept in its limiter's row. `wait` before a poll of
    an idle worker, `leave` once no poll of the worker waits any more (a page came, the
    poll came back empty, or the worker stops): held only while a poll waits, so a page
    worker that stopped or paused never keeps the others waiting."""

    def __init__(
        self,
        limiter: SharedLimiter,
        version: str | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._limiter = limiter
        self._sessions = limiter.sessions
        self._name = limiter.name
        self._version = version or ""
        self._me = f"{self._version} {uuid.uuid4().hex}"
        self._clock = clock
        self._row_made = False
        self._renewing: asyncio.Task[None] | None = None
        self._giving_up: asyncio.Task[None] | None = None
        self.held = False

    async def wait(self) -> None:
        """Return once this worker may poll the idle queue: the turn is its own (renewed
        from then on, until `leave`), another version's, or the database cannot tell."""
        if self._giving_up is not None:
            await asyncio.wait([self._giving_up])  # not after the turn is taken again
        while True:
            try:
                if not self._row_made:  # the limiter makes its row at its first slot
                    await self._limiter.make_row()
                    self._row_made = True
                if await self.take():
                    break
            except Exception:  # the database: poll anyway, as without the turn
                log.warning("could not ask for the idle page poll's turn; polling")
                break
            await asyncio.sleep(CHECK_SECONDS)
        if self.held and self._renewing is None:
            self._renewing = asyncio.create_task(self._keep())

    def leave(self) -> None:
        """Stop renewing and give the turn up (in the background): the next idle worker
        of this version may poll."""
        if self._renewing is not None:
            self._renewing.cancel()
            self._renewing = None
        if self.held:
            self._giving_up = asyncio.create_task(self._let_go())

    async def _keep(self) -> None:
        try:
            while True:
                await asyncio.sleep(RENEW_SECONDS)
                if not await self.renew():
                    break  # lost: taken over after it expired
        except Exception:  # the database: the turn expires, another worker takes it
            log.warning("could not renew the idle page poll's turn")
        finally:
            if self._renewing is asyncio.current_task():
                self._renewing = None

    async def _let_go(self) -> None:
        try:
            await self.give_up()
        except Exception:  # the database: the turn expires instead
            log.warning("could not give up the idle page poll's turn")
        finally:
            if self._giving_up is asyncio.current_task():
                self._giving_up = None

    async def take(self) -> bool:
        """Whether this worker may poll the idle queue now (and holds the turn if its
        version's turn was free)."""
        return await in_session(self._sessions, self._take)

    async def renew(self) -> bool:
        """Renew the turn; False if it was lost (taken over after it expired)."""
        self.held = await in_session(self._sessions, self._renew) == 1
        return self.held

    async def give_up(self) -> None:
        self.held = False
        await in_session(self._sessions, self._give_up)

    def _take(self, session: Session) -> bool:
        now = self._clock()
        taken = execute(
            session, _TAKE, row_name=self._name, me=self._me, now=now, expired=now - EXPIRES_SECONDS
        )
        holder = None if taken.rowcount else execute(session, _HOLDER, row_name=self._name).scalar()
        session.commit()
        self.held = taken.rowcount == 1
        # Polls too when the turn is another version's (or the row is gone).
        return self.held or holder is None or holder.rsplit(" ", 1)[0] != self._version

    def _renew(self, session: Session) -> int:
        renewed = execute(session, _RENEW, row_name=self._name, me=self._me, now=self._clock())
        session.commit()
        return int(renewed.rowcount)

    def _give_up(self, session: Session) -> None:
        execute(session, _GIVE_UP, row_name=self._name, me=self._me)
        session.commit()
