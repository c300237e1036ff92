"""Core statements run on a session's own connection, for the writes around every page.

`Session.execute` takes even a Core statement through the ORM (its compile state, session
synchronisation, autoflush): about 0.3-0.5 ms of CPU a statement on a small machine,
against 0.07 ms for the same statement, built once with bind parameters, on the session's
connection (bench/README.md, "Throughput and CPU per page"). A page makes about twenty, so
the page's path (the ledger, the budgets, the page's record and draft) builds its
statements once, at import, and runs them here, in the session's transaction: the session
still commits or rolls them back. As `Session.execute` would, the session's pending
changes are flushed first, and a write expires the objects it holds (they reload).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import CursorResult, Executable
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import UpdateBase


def execute(session: Session, statement: Executable, **params: Any) -> CursorResult[Any]:
    """`statement` with these bind parameters, in the session's transaction."""
    session.flush()  # cheap with nothing pending, as on the page's path
    result = session.connection().execute(statement, params)
    if isinstance(statement, UpdateBase):  # an INSERT, UPDATE or DELETE
        session.expire_all()
    return result
