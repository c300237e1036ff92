"""`python worker.py` on a bad set-up prints one line naming the problem and exits 2, and
registers our search attributes where its namespace lacks them."""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import psycopg
import pytest
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from storywink import contract
from storywink.config import load_settings
from storywink.worker.process import warn_if_photos_leave_the_host
from tests.support.commands import clean_env, run_worker
from tests.support.paths import WORKER_SCRIPT
from tests.support.services import PG_ADMIN_URL
from tests.support.temporal_server import dev_server
from tests.support.worker_processes import free_port

PASSWORD = "s3cret-pw"
STARTED_WITHIN = 60


def assert_refused_in_one_line(result: subprocess.CompletedProcess[str], *named: str) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert PASSWORD not in result.stderr
    for name in named:
        assert name in lines[0], lines[0]
    return lines[0]


def postgres_base_url() -> str:
    """postgresql+psycopg://user:PASSWORD@host:port of the test server (trust auth ignores
    the password), or skip when it does not answer."""
    try:
        psycopg.connect(PG_ADMIN_URL, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {str(exc).strip()[:200]}")
    user_host = PG_ADMIN_URL.removeprefix("postgresql://").rsplit("/", 1)[0]
    user, _, host = user_host.rpartition("@")
    return f"postgresql+psycopg://{user or 'postgres'}:{PASSWORD}@{host}"


@pytest.mark.parametrize(
    ("bad_url", "problem"),
    [
        (f"postgresql://u:{PASSWORD}@host:port/db", "is malformed"),
        (f"postgresql+asyncpg://u:{PASSWORD}@localhost/db", "driver is not installed"),
        (f"mysql://u:{PASSWORD}@localhost/db", "driver is not installed"),
        (f"postgresql+psycopg://u:{PASSWORD}@127.0.0.1:1/db", "Connection refused"),
    ],
)
def test_unusable_database_url_is_one_line_and_exit_2(
    tmp_path: Path, bad_url: str, problem: str
) -> None:
    result = run_worker(tmp_path, DATABASE_URL=bad_url, LOG_LEVEL="WARNING")
    assert_refused_in_one_line(result, "DATABASE_URL", problem)


def test_database_that_does_not_exist_is_named(tmp_path: Path) -> None:
    url = f"{postgres_base_url()}/storywink_no_such_database"
    result = run_worker(tmp_path, DATABASE_URL=url, LOG_LEVEL="WARNING")
    assert_refused_in_one_line(
        result, "DATABASE_URL", 'database "storywink_no_such_database" does not exist'
    )


def test_invalid_log_level_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = run_worker(tmp_path, LOG_LEVEL="LOUD")
    assert_refused_in_one_line(result, "LOG_LEVEL", "'LOUD'")


def test_missing_namespace_is_one_line_and_exit_2(
    tmp_path: Path, temporal_env: WorkflowEnvironment
) -> None:
    result = run_worker(
        tmp_path,
        TEMPORAL_ADDRESS=temporal_env.client.service_client.config.target_host,
        TEMPORAL_NAMESPACE="no-such-namespace",
        LOG_LEVEL="WARNING",
    )
    line = assert_refused_in_one_line(result, "TEMPORAL_NAMESPACE", "does not exist")
    assert "'no-such-namespace'" in line


async def custom_search_attributes(address: str) -> dict[str, int]:
    client = await Client.connect(address)
    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace="default")
    )
    return dict(listed.custom_attributes)


def start_worker(tmp_path: Path, address: str, health_port: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WORKER_SCRIPT)],
        cwd=tmp_path,
        env=clean_env(
            tmp_path, TEMPORAL_ADDRESS=address, HEALTH_PORT=str(health_port), OPS_HOST="127.0.0.1"
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


async def wait_ready(process: subprocess.Popen[str], health_port: int) -> None:
    async with httpx.AsyncClient(timeout=1) as http:
        for _ in range(STARTED_WITHIN * 10):
            assert process.poll() is None, process.communicate()[1]
            try:
                if (await http.get(f"http://127.0.0.1:{health_port}/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"worker not ready within {STARTED_WITHIN}s")


@pytest.mark.process
async def test_worker_registers_missing_search_attributes_and_starts(tmp_path: Path) -> None:
    async with dev_server(tmp_path, search_attributes={}) as server:
        assert not set(await custom_search_attributes(server.address)) & {
            key.name for key in contract.SEARCH_ATTRIBUTES
        }
        health_port = free_port()
        process = start_worker(tmp_path, server.address, health_port)
        try:
            await wait_ready(process, health_port)
        finally:
            process.send_signal(signal.SIGTERM)
            _, stderr = await asyncio.to_thread(process.communicate, None, 30)
        assert "registered search attributes BookId, BookUserId, BookOutcome" in stderr
        registered = await custom_search_attributes(server.address)
        for key in contract.SEARCH_ATTRIBUTES:
            assert registered.get(key.name) == key.indexed_value_type.value


@pytest.mark.process
async def test_worker_refused_search_attributes_says_how_to_add_them(tmp_path: Path) -> None:
    # The dev server's SQL visibility holds at most 10 Keyword attributes: these fill them.
    fillers = {f"Filler{n}": "Keyword" for n in range(10)}
    async with dev_server(tmp_path, search_attributes=fillers) as server:
        result = await asyncio.to_thread(
            run_worker, tmp_path, TEMPORAL_ADDRESS=server.address, LOG_LEVEL="WARNING"
        )
    line = assert_refused_in_one_line(result, "TEMPORAL_NAMESPACE")
    for key in contract.SEARCH_ATTRIBUTES:
        assert (
            f"temporal operator search-attribute create --namespace default "
            f"--name {key.name} --type Keyword"
        ) in line


@pytest.mark.parametrize(
    ("values", "warned"),
    [
        ({"gemini_api_key": "key"}, True),
        ({"gemini_api_key": "key", "cloudinary_url": "cloudinary://k:s@cloud"}, False),
        ({"illustrator": "local"}, False),
    ],
)
def test_real_model_with_local_storage_warns_in_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, values: dict[str, str], warned: bool
) -> None:
    settings = load_settings(storage_dir=tmp_path, **values)
    with caplog.at_level(logging.WARNING, logger="storywink.worker"):
        warn_if_photos_leave_the_host(settings)
    warnings = [record.getMessage() for record in caplog.records]
    if warned:
        assert len(warnings) == 1 and "\n" not in warnings[0]
        assert "local storage" in warnings[0] and str(tmp_path.resolve()) in warnings[0]
    else:
        assert warnings == []
