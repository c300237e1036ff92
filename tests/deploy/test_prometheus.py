"""A real Prometheus (Debian's `prometheus` package) scraping a real `python worker.py`: the
page counts of an illustrated book read back through Prometheus' query API."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from storywink.config import Settings
from storywink.contract import BookStatus
from storywink.db.connection import Database
from tests.support.helpers import create_book, photo_urls, start
from tests.support.paths import WORKER_SCRIPT
from tests.support.services import required_tool
from tests.support.worker_processes import free_port

pytestmark = pytest.mark.process

PAGES = 3


def _prometheus() -> str:
    return required_tool("prometheus")


def _spawn(args: list[str], log: Path, env: dict[str, str] | None) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(args, cwd=log.parent, env=env, stdout=out, stderr=subprocess.STDOUT)


async def _query(http: httpx.AsyncClient, base: str, promql: str) -> list[float]:
    response = await http.get(f"{base}/api/v1/query", params={"query": promql})
    response.raise_for_status()
    body = response.json()
    assert body["status"] == "success", body
    return [float(item["value"][1]) for item in body["data"]["result"]]


async def test_prometheus_reads_a_books_page_counts_from_a_worker(
    temporal_env: WorkflowEnvironment,
    settings: Settings,
    database: Database,
    tmp_path: Path,
) -> None:
    prometheus = _prometheus()
    metrics_port, prom_port = free_port(), free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: storywink-worker\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{metrics_port}']}}]\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GEMINI", "GOOGLE", "CLOUD"))}
    env.update(
        TEMPORAL_ADDRESS=settings.temporal_address,
        TEMPORAL_TASK_QUEUE=settings.temporal_task_queue,
        TEMPORAL_ILLUSTRATION_TASK_QUEUE=settings.temporal_illustration_task_queue,
        DATABASE_URL=settings.resolved_database_url,
        ILLUSTRATOR="local",
        STORAGE="local",
        STORAGE_DIR=str(settings.storage_dir),
        METRICS_PORT=str(metrics_port),
        OPS_HOST="127.0.0.1",
        WORKER_IDENTITY="prometheus-scraped",
        SHUTDOWN_GRACE_SECONDS="2",
        LOCAL_IMAGE_SIZE="256",
        NO_PROXY="127.0.0.1,localhost",
    )
    book_id = create_book(database, photo_urls(settings.storage_dir / "photos", PAGES))
    worker = _spawn([sys.executable, str(WORKER_SCRIPT)], tmp_path / "worker.log", env)
    server = _spawn(
        [
            prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
        tmp_path / "prom.log",
        None,
    )
    base = f"http://127.0.0.1:{prom_port}"
    try:
        handle = await start(temporal_env.client, settings, book_id)
        # A bound, not a figure: the suite runs beside this test.
        outcome = await asyncio.wait_for(handle.result(), timeout=60)
        assert outcome.status is BookStatus.COMPLETED and outcome.pages_with_image == PAGES

        async with httpx.AsyncClient(timeout=2) as http, asyncio.timeout(15):
            while True:
                try:
                    got = await _query(http, base, 'sum(storywink_pages_total{outcome="OK"})')
                except httpx.HTTPError:
                    got = []
                if got == [PAGES]:
                    break
                assert server.poll() is None, (tmp_path / "prom.log").read_text()[-2000:]
                await asyncio.sleep(0.25)
            # The scrape target is up and the SDK's series arrive under their real names.
            assert await _query(http, base, 'up{job="storywink-worker"}') == [1]
            waits = (
                "temporal_activity_schedule_to_start_latency_count"
                '{worker_identity="prometheus-scraped"}'
            )
            assert sum(await _query(http, base, waits)) >= PAGES
            slots = await _query(http, base, "temporal_worker_task_slots_available")
            assert slots
            retries = await _query(http, base, "sum(storywink_page_retries_total)")
            assert retries in ([], [0.0])
    finally:
        for process in (worker, server):
            if process.poll() is None:
                process.terminate()
        for process in (worker, server):
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
