"""The tests' fixtures, registered as a pytest plugin (tests/conftest.py): one real
Temporal dev server per test run (the xdist workers of a parallel run share it), real
databases, fresh task queues per test, and the fake Gemini and Cloudinary servers.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from storywink import contract
from storywink.config import Settings
from storywink.db.connection import Database
from storywink.db.engine import make_engine, make_session_factory, upgrade_to_head
from tests.support import forked_cli
from tests.support.pipeline import Pipeline, offline_pipeline
from tests.support.provider_fakes import Fakes, SettingsFactory, provider_values, running_fakes
from tests.support.services import DATABASES, postgres_database, test_settings, tool_path
from tests.support.temporal_server import DevServer, answering

# Set by the xdist controller for its workers: the address of the dev server they share.
SHARED_SERVER = "STORYWINK_TEST_TEMPORAL_ADDRESS"
_shared: DevServer | None = None


def pytest_configure(config: pytest.Config) -> None:
    """A parallel run's controller starts one dev server for all its workers (each would
    start its own otherwise: seconds of CPU each); workers wait for it to answer."""
    global _shared
    parallel = getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput")
    if parallel and SHARED_SERVER not in os.environ:
        _shared = DevServer(Path(tempfile.mkdtemp(prefix="storywink-temporal-")), in_memory=True)
        _shared.spawn()
        os.environ[SHARED_SERVER] = _shared.address


def pytest_unconfigure(config: pytest.Config) -> None:
    forked_cli.stop()
    if _shared is not None:
        _shared.kill()
        shutil.rmtree(_shared.log.parent, ignore_errors=True)


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> Iterator[None]:
    """Modules with `process` tests first (they are the slow ones): under xdist they start
    early on every worker instead of lengthening the end of the run. (A wrapper: after
    pytest has grouped the tests by database.)"""
    yield
    slow_modules = {item.path for item in items if item.get_closest_marker("process")}
    items.sort(key=lambda item: item.path not in slow_modules)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Which databases a test runs on: every one of STORYWINK_TEST_DATABASES when marked
    `each_database` (the database plays a part in what it proves), PostgreSQL alone when
    marked `postgresql_only`, else the first one."""
    if "database_url" not in metafunc.fixturenames:
        return
    marked = metafunc.definition.get_closest_marker
    wanted: list[object] = list(DATABASES[:1])
    if marked("each_database"):
        wanted = list(DATABASES)
    elif marked("postgresql_only"):
        wanted = [
            "postgresql"
            if "postgresql" in DATABASES
            else pytest.param(
                "postgresql",
                marks=pytest.mark.skip(reason="STORYWINK_TEST_DATABASES leaves PostgreSQL out"),
            )
        ]
    metafunc.parametrize("database_url", wanted, indirect=True, scope="session")


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    if address := os.environ.get(SHARED_SERVER):
        yield WorkflowEnvironment.from_client(await answering(address))
        return
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


@pytest.fixture(scope="session")
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'storywink.db'}"
    elif request.param == "postgresql":
        yield from postgres_database(f"storywink_test_{uuid.uuid4().hex[:12]}")
    else:
        pytest.fail(f"unknown database {request.param!r} in STORYWINK_TEST_DATABASES")


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


@pytest.fixture
def settings(temporal_env: WorkflowEnvironment, database_url: str, tmp_path: Path) -> Settings:
    return test_settings(temporal_env, database_url, tmp_path)


@pytest.fixture
def fakes(request: pytest.FixtureRequest) -> Iterator[Fakes]:
    """The fakes, answering in today's format unless a test parametrizes it
    (`@pytest.mark.parametrize("fakes", ANSWER_FORMATS, indirect=True)`)."""
    with running_fakes(getattr(request, "param", "2026")) as running:
        yield running


@pytest.fixture
def provider_settings(
    temporal_env: WorkflowEnvironment, database_url: str, tmp_path: Path, fakes: Fakes
) -> SettingsFactory:
    """Test settings that use the fake Gemini and Cloudinary through the real SDKs."""

    def make(**overrides: object) -> Settings:
        values = provider_values(fakes) | overrides
        return test_settings(temporal_env, database_url, tmp_path, **values)

    return make


@pytest.fixture
def pipeline(
    temporal_env: WorkflowEnvironment, database_url: str, database: Database, tmp_path: Path
) -> Pipeline:
    """Whole runs on the offline providers (tests.support.pipeline)."""
    return offline_pipeline(temporal_env, database_url, database, tmp_path)


@pytest.fixture
def fake_pipeline(
    temporal_env: WorkflowEnvironment,
    database: Database,
    fakes: Fakes,
    provider_settings: SettingsFactory,
) -> Pipeline:
    """Whole runs on the fake Gemini and Cloudinary, through the real SDKs."""
    return Pipeline(
        temporal_env.client, database, provider_settings(), provider_settings, fakes.photo_urls
    )
