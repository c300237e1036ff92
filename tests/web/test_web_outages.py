"""Temporal or the database unavailable: the API answers 503 with Retry-After (a problem,
no traceback, no secret), `/readyz` says which, and all is well again once it is back."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy.engine import make_url
from temporalio.testing import WorkflowEnvironment

from storywink.db.connection import Database
from tests.support.helpers import create_book
from tests.support.pg_proxy import PostgresProxy
from tests.support.services import test_settings
from tests.support.web_app import WEB_SETTINGS, api_client, running_app

USER = "parent-outage"


@contextmanager
def proxied(host: str, port: int) -> Iterator[tuple[PostgresProxy, str]]:
    """A TCP proxy a test cuts and restores (tests/support/pg_proxy.py); its address."""
    with PostgresProxy(host, port) as proxy:
        yield proxy, f"127.0.0.1:{proxy.port}"


@pytest.mark.postgresql_only  # an embedded SQLite file cannot become unreachable
async def test_the_database_unavailable_is_503_with_retry_after(
    temporal_env: WorkflowEnvironment, database: Database, database_url: str, tmp_path: Path
) -> None:
    book_id = create_book(database, [None], user_id=USER)
    url = make_url(database_url)
    with proxied(url.host or "127.0.0.1", url.port or 5432) as (proxy, address):
        host, port = address.split(":")
        through = url.set(host=host, port=int(port)).render_as_string(hide_password=False)
        settings = test_settings(temporal_env, through, tmp_path, **WEB_SETTINGS)
        async with running_app(settings) as web, api_client(web, USER) as http:
            assert (await http.get(f"/books/{book_id}")).status_code == 200
            proxy.cut()
            down = await http.get(f"/books/{book_id}")
            ready = await http.get("/readyz")
            proxy.restore()
            back = await http.get(f"/books/{book_id}")
    assert down.status_code == 503, down.text
    assert down.headers["retry-after"] == "5"
    assert down.headers["content-type"] == "application/problem+json"
    assert down.json()["detail"] == "The database is unavailable right now; try again"
    assert ready.status_code == 503 and ready.json()["database"].startswith("unavailable")
    assert ready.json()["temporal"] == "ok"
    assert back.status_code == 200


async def test_temporal_unavailable_is_503_with_retry_after(
    temporal_env: WorkflowEnvironment, database: Database, database_url: str, tmp_path: Path
) -> None:
    book_id = create_book(database, [None], user_id=USER)
    target = temporal_env.client.service_client.config.target_host
    host, port = target.rsplit(":", 1)
    with proxied(host, int(port)) as (proxy, address):
        settings = test_settings(
            temporal_env, database_url, tmp_path, **WEB_SETTINGS, temporal_address=address
        )
        settings = settings.model_copy(update={"database_url": SecretStr(database_url)})
        async with running_app(settings) as web, api_client(web, USER) as http:
            proxy.cut()
            started = time.monotonic()
            down = await http.post(f"/books/{book_id}/illustration")
            waited = time.monotonic() - started
            ready = await http.get("/readyz")
            proxy.restore()
    assert down.status_code == 503, down.text
    assert down.headers["retry-after"] == "5"
    assert down.json()["detail"] == "Temporal is unavailable right now; try again"
    assert waited < 30
    assert ready.status_code == 503 and ready.json()["temporal"].startswith("unavailable")
