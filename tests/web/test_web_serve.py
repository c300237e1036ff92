"""`storywink serve` and `storywink token` as a user runs them: the local secret is made
on first use and never shown, a token it prints is accepted by the server (two worker
processes), `/readyz` answers once the database and Temporal do."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from pathlib import Path

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from tests.support.commands import STORYWINK, clean_env
from tests.support.worker_processes import free_port

pytestmark = pytest.mark.process


async def test_serve_accepts_the_token_that_token_prints(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    port = free_port()
    env = clean_env(
        tmp_path,
        TEMPORAL_ADDRESS=temporal_env.client.service_client.config.target_host,
        WEB_JWT_SECRET_FILE=str(tmp_path / "secret"),
        LOG_LEVEL="DEBUG",
    )
    printed = await asyncio.to_thread(
        subprocess.run,
        [str(STORYWINK), "token", "--user", "parent-cli"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    token = printed.stdout.strip()
    # The web backend is a client: it serves an existing database, never makes one.
    await asyncio.to_thread(
        subprocess.run,
        [str(STORYWINK), "db", "upgrade"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        timeout=120,
        check=True,
    )
    secret = (tmp_path / "secret").read_text().strip()
    assert oct((tmp_path / "secret").stat().st_mode & 0o777) == "0o600"
    assert token.count(".") == 2 and secret not in token

    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        server = await asyncio.to_thread(
            subprocess.Popen,
            [str(STORYWINK), "serve", "--port", str(port), "--workers", "2"],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            async with asyncio.timeout(120):  # a loaded machine starts 2 processes slowly
                while True:
                    try:
                        if (await http.get("/readyz")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    assert server.poll() is None, log.read_text()
                    await asyncio.sleep(0.2)
            answers = [
                await http.get("/books", headers={"Authorization": f"Bearer {token}"})
                for _ in range(4)
            ]
            refused = await http.get("/books", headers={"Authorization": "Bearer x.y.z"})
            page = await http.get("/")
            docs = await http.get("/docs")
    finally:
        server.send_signal(signal.SIGTERM)
        await asyncio.to_thread(server.wait, 30)
    assert [answer.status_code for answer in answers] == [200] * 4
    assert answers[0].json() == {"books": [], "next_cursor": None}
    assert refused.status_code == 401
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert page.status_code == 200 and "EventSource" not in page.text  # the script is apart
    output = log.read_text()
    assert f"http://127.0.0.1:{port}/" in output
    assert secret not in output and token not in output
