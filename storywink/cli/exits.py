"""How a `storywink` command ends: its exit codes, and every failure as one line.

Every failure a person can act on is one line on stderr, `error: ...`, with an exit code
from `ExitCode`; no traceback, no secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Coroutine, Iterator
from enum import IntEnum
from typing import Any, Final, NoReturn, TypeVar
from urllib.parse import urlsplit

import typer
from rich.console import Console
from rich.markup import escape
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from temporalio.service import RPCError
from typer.exceptions import TyperException

from storywink.book.inputs import BookInputError
from storywink.book.refusals import BookError
from storywink.config import ConfigurationError, Settings, load_settings
from storywink.db.engine import DatabaseNotReady, driver_complaint
from storywink.demo.devserver import DevServerError
from storywink.providers.base import PermanentError, TransientError
from storywink.redact import redact, shorten
from storywink.temporal.connection import (
    TemporalConnectionLost,
    TemporalUnavailable,
    is_connection_lost,
)

err = Console(stderr=True, soft_wrap=True)
T = TypeVar("T")
ERROR_LINE_LIMIT: Final = 600


class ExitCode(IntEnum):
    """Exit codes of every command (`storywink illustrate` uses them all)."""

    OK = 0  # illustrate: the book is COMPLETED
    REFUSED = 1  # book not found, not ready, busy; the run failed; an unexpected error
    BAD_INPUT = 2  # bad input or configuration; database, Temporal or CDN unreachable
    STUCK = 3  # books: a book is stuck
    PARTIAL = 4  # illustrate: the book is PARTIAL
    FAILED = 5  # illustrate: the book is FAILED
    CANCELLED = 6  # illustrate: the run was cancelled (the book is still settled)
    TERMINATED = 7  # illustrate: the run was terminated or timed out
    CONNECTION_LOST = 8  # illustrate: Temporal stopped answering while it followed the run


_SECRET_ENVIRONMENT: Final = ("DATABASE_URL", "GEMINI_API_KEY", "GOOGLE_API_KEY", "CLOUDINARY_URL")


def secrets() -> list[str]:
    """Every secret this process may know, from the settings and from the environment."""
    found = []
    with contextlib.suppress(ConfigurationError, ValueError, ArgumentError):
        found.extend(load_settings().secrets())
    # The raw environment too: settings that do not load still hold secrets.
    for value in (os.environ.get(name, "") for name in _SECRET_ENVIRONMENT):
        if "://" not in value:
            found.append(value)  # an API key
            continue
        if value.startswith("cloudinary:"):
            found.append(value)
        with contextlib.suppress(ValueError):
            found.append(urlsplit(value).password or "")  # a database or Cloudinary secret
    return [value for value in found if value]


def fail(code: ExitCode, message: str) -> NoReturn:
    line = shorten(redact(message, secrets()), ERROR_LINE_LIMIT)
    err.print(f"[red]error:[/] {escape(line)}", highlight=False)
    raise typer.Exit(code)


def _with_notes(exc: BaseException) -> str:
    return "; ".join([str(exc), *getattr(exc, "__notes__", [])])


@contextlib.contextmanager
def one_line_errors() -> Iterator[None]:
    """Turn every failure of a command into one `error: ...` line and its exit code."""
    try:
        yield
    except (typer.Exit, typer.Abort, TyperException):
        raise
    except TemporalConnectionLost as exc:
        fail(ExitCode.CONNECTION_LOST, str(exc))
    except (BookInputError, ConfigurationError, DatabaseNotReady, TemporalUnavailable) as exc:
        fail(ExitCode.BAD_INPUT, _with_notes(exc))
    except SQLAlchemyError as exc:
        name, line = driver_complaint(exc)
        fail(ExitCode.BAD_INPUT, f"database (DATABASE_URL): {name}: {line}")
    except ImportError as exc:
        fail(ExitCode.BAD_INPUT, f"a module is missing (the database driver?): {exc}")
    except (PermanentError, TransientError) as exc:
        fail(ExitCode.BAD_INPUT, f"image store: {_with_notes(exc)}")
    except RPCError as exc:
        if is_connection_lost(exc):
            settings = load_settings()
            fail(
                ExitCode.BAD_INPUT,
                f"cannot reach Temporal at {settings.temporal_address} "
                f"(TEMPORAL_ADDRESS): {exc.message}",
            )
        namespace = load_settings().temporal_namespace
        fail(
            ExitCode.BAD_INPUT,
            f"Temporal refused (namespace {namespace}, TEMPORAL_NAMESPACE): {exc.message}",
        )
    except OSError as exc:
        fail(ExitCode.BAD_INPUT, _with_notes(exc))
    except (BookError, DevServerError) as exc:
        fail(ExitCode.REFUSED, str(exc))
    except Exception as exc:
        if os.environ.get("STORYWINK_TRACEBACK"):
            raise
        fail(
            ExitCode.REFUSED,
            f"unexpected {type(exc).__name__}: {exc} (STORYWINK_TRACEBACK=1 shows where)",
        )


def checked_settings() -> Settings:
    """The settings, with DATABASE_URL at least well-formed (its password never shown)."""
    settings = load_settings()
    try:
        make_url(settings.resolved_database_url).port  # noqa: B018 - parsing is the check
    except (ArgumentError, ValueError) as exc:
        problem = str(exc).split(" from string", 1)[0]
        raise ConfigurationError(f"DATABASE_URL is not a database URL: {problem}") from None
    return settings


def settings_or_exit() -> Settings:
    with one_line_errors():
        return checked_settings()


def run_or_exit(work: Coroutine[Any, Any, T]) -> T:
    with one_line_errors():
        return asyncio.run(work)
