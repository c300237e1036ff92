"""The database every process opens once: its engine and session factory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from storywink.config import Settings
from storywink.db.engine import (
    DatabaseUnavailable,
    check_schema_current,
    is_sqlite,
    make_engine,
    make_session_factory,
    upgrade_to_head,
)


def refuse_missing_sqlite_file(settings: Settings) -> None:
    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return
    if not Path(url.database).is_file():
        origin = "DATABASE_URL" if settings.database_url.get_secret_value() else "the default"
        raise DatabaseUnavailable(
            f"database {url.render_as_string(hide_password=True)} ({origin}): no such file; "
            "a worker (python worker.py) or `storywink db upgrade` creates it"
        )


@dataclass(frozen=True)
class Database:
    engine: Engine
    sessions: sessionmaker[Session]


def open_database(settings: Settings, *, create: bool = False) -> Database:
    """Open the database; an embedded SQLite file is migrated to the latest schema.

    Only a process meant to create the database (`create`: the worker, `storywink db
    upgrade`, the demo) creates a SQLite file that does not exist; any other refuses it,
    naming DATABASE_URL, instead of answering from a new, empty file."""
    if not create:
        refuse_missing_sqlite_file(settings)
    engine = make_engine(settings.resolved_database_url)
    if is_sqlite(settings.resolved_database_url):
        upgrade_to_head(engine)
    check_schema_current(engine)
    return Database(engine, make_session_factory(engine))
