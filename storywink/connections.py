"""Connections every process builds once: Temporal client, database, secret redactor."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import Runtime

from storywink.config import Settings
from storywink.db.engine import (
    check_schema_current,
    is_sqlite,
    make_engine,
    make_session_factory,
    upgrade_to_head,
)
from storywink.redact import Redactor


class TemporalUnavailable(RuntimeError):
    pass


async def connect_temporal(settings: Settings, runtime: Runtime | None = None) -> Client:
    """Connect with the pydantic converter, and check the server answers. Workers built
    on the client use its `runtime` (metrics, core logs); the default one when None."""
    try:
        client = await Client.connect(
            settings.temporal_address,
            namespace=settings.temporal_namespace,
            data_converter=pydantic_data_converter,
            runtime=runtime,
        )
        await client.service_client.check_health()
    except Exception as exc:
        raise TemporalUnavailable(
            f"cannot reach Temporal at {settings.temporal_address} "
            f"(TEMPORAL_ADDRESS): {type(exc).__name__}: {exc}"
        ) from None
    return client


@dataclass(frozen=True)
class Database:
    engine: Engine
    sessions: sessionmaker[Session]


def open_database(settings: Settings) -> Database:
    """Open the database; an embedded SQLite file is migrated to the latest schema."""
    engine = make_engine(settings.resolved_database_url)
    if is_sqlite(settings.resolved_database_url):
        upgrade_to_head(engine)
    check_schema_current(engine)
    return Database(engine, make_session_factory(engine))


def redactor_for(settings: Settings) -> Redactor:
    secrets: list[str | None] = []
    if settings.gemini_api_key:
        secrets.append(settings.gemini_api_key.get_secret_value())
    if settings.cloudinary_url:
        secrets.append(settings.cloudinary_url.get_secret_value())
        secrets.append(settings.cloudinary.api_secret.get_secret_value())
    secrets.append(make_url(settings.resolved_database_url).password)
    return Redactor(secrets)
