"""Engine construction and migrations for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import asyncio
import fcntl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError, StatementError
from sqlalchemy.orm import Session, sessionmaker

P = ParamSpec("P")
T = TypeVar("T")

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


# Any fixed number, the same in every process that migrates a PostgreSQL database.
_PG_MIGRATION_LOCK_KEY = 0x5709_717B


class DatabaseNotReady(RuntimeError):
    """The database is unreachable or not at the latest migration."""


class DatabaseUnavailable(DatabaseNotReady):
    """DATABASE_URL names a database we cannot use: malformed, driver not installed,
    server unreachable, database missing. The message is one line without the password."""


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL + busy timeout let several worker processes share one SQLite file.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_engine(url: str) -> Engine:
    """An engine for `url` (no connection yet); `DatabaseUnavailable` if it cannot be built."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise DatabaseUnavailable("DATABASE_URL is malformed") from None
    try:
        if parsed.get_backend_name() == "sqlite":
            return _make_sqlite_engine(parsed)
        return create_engine(
            parsed,
            pool_pre_ping=True,
            pool_size=10,
            max_overflow=10,
            connect_args={"connect_timeout": 10},
        )
    except ArgumentError as exc:  # includes NoSuchModuleError: unknown dialect or driver
        raise _unavailable(parsed, f"unsupported database URL ({exc})") from None
    except ImportError as exc:
        raise _unavailable(
            parsed, f"its driver is not installed (no module {exc.name or '?'})"
        ) from None
    except OSError as exc:
        raise _unavailable(parsed, f"cannot create its directory ({exc.strerror})") from None


def _make_sqlite_engine(url: URL) -> Engine:
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30})
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _unavailable(url: URL, problem: str) -> DatabaseUnavailable:
    shown = url.render_as_string(hide_password=True)
    if url.password:
        problem = problem.replace(str(url.password), "***")
    return DatabaseUnavailable(f"database {shown} (DATABASE_URL): {problem}")


def driver_complaint(exc: SQLAlchemyError) -> tuple[str, str]:
    """(error type, first line) of the driver's error under a SQLAlchemy one: without the
    SQL statement, its parameters (kilobytes of user data, maybe) or SQLAlchemy's links."""
    cause: BaseException = exc
    if isinstance(exc, StatementError) and exc.orig is not None:
        cause = exc.orig
    lines = str(cause).strip().splitlines()
    line = lines[0] if lines else ""
    if cause is exc:
        line = line.split(" [SQL:")[0].split(" (Background on")[0]
    return type(cause).__name__, line


def connection_problem(exc: Exception) -> str:
    """The driver's reason a connection failed, on one line: `database "x" does not exist`,
    `Connection refused`, `unable to open database file`..."""
    if not isinstance(exc, DBAPIError):
        return type(exc).__name__
    name, line = driver_complaint(exc)
    reason = (line or name).rpartition(" failed: ")[
        2
    ]  # libpq: "connection to server at … failed: "
    return reason.removeprefix("FATAL:").strip()


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


def upgrade_to_head(engine: Engine) -> None:
    """Bring the schema to the latest migration (a no-op when it already is). Safe when
    several processes run it at once: one migrates, the others then find the schema at head."""
    try:
        with _migration_lock(engine):
            command.upgrade(alembic_config(engine), "head")
    except DBAPIError as exc:
        raise _unavailable(engine.url, f"cannot migrate: {connection_problem(exc)}") from None
    except OSError as exc:  # the SQLite lock file
        raise _unavailable(engine.url, f"cannot migrate: {exc.strerror}") from None


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """Held by one migrating process at a time: a lock file beside a SQLite file, an
    advisory lock on PostgreSQL (held by its own connection for the whole upgrade)."""
    if engine.url.get_backend_name() == "sqlite":
        database = engine.url.database
        if not database or database == ":memory:":
            yield
            return
        with Path(f"{database}.migration-lock").open("a") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)  # released when the file is closed
            yield
        return
    if engine.url.get_backend_name() == "postgresql":
        with engine.connect() as connection:
            connection.execute(
                text("SELECT pg_advisory_lock(:key)"), {"key": _PG_MIGRATION_LOCK_KEY}
            )
            try:
                yield
            finally:
                connection.execute(
                    text("SELECT pg_advisory_unlock(:key)"), {"key": _PG_MIGRATION_LOCK_KEY}
                )
        return
    yield


def check_schema_current(engine: Engine) -> str:
    """Connect, and check the schema is at the latest migration; return its revision."""
    head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
            current = MigrationContext.configure(connection).get_current_revision()
    except Exception as exc:
        raise _unavailable(engine.url, f"cannot connect: {connection_problem(exc)}") from None
    if current != head:
        raise DatabaseNotReady(
            f"database schema is at {current or 'nothing'}, expected {head}: "
            "run `storywink db upgrade`"
        )
    return head or ""


async def in_session(
    factory: sessionmaker[Session],
    fn: Callable[Concatenate[Session, P], T],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """Run one blocking unit of database work in a thread, with its own session."""

    def call() -> T:
        with factory() as session:
            return fn(session, *args, **kwargs)

    return await asyncio.to_thread(call)
