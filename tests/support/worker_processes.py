"""`python worker.py` replicas as subprocesses, and what the tests read about them.

Real processes are what several replicas competing for the same queues need, and the only
way to kill -9 a worker without killing the test.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle

from storywink.config import Settings
from tests.support.paths import WORKER_SCRIPT
from tests.support.provider_fakes import Fakes


def worker_env(
    settings: Settings, fakes: Fakes, identity: str, overrides: Mapping[str, str] | None = None
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GEMINI", "GOOGLE"))}
    env.update(fakes.env(settings))
    env.update(
        {
            "TEMPORAL_ADDRESS": settings.temporal_address,
            "TEMPORAL_TASK_QUEUE": settings.temporal_task_queue,
            "TEMPORAL_ILLUSTRATION_TASK_QUEUE": settings.temporal_illustration_task_queue,
            "TEMPORAL_STORY_TASK_QUEUE": settings.temporal_story_task_queue,
            "DATABASE_URL": settings.resolved_database_url,
            "ILLUSTRATION_CONCURRENCY": "3",
            "MODEL_TIMEOUT_SECONDS": "10",
            "PAGE_START_TO_CLOSE_SECONDS": "30",
            "PAGE_HEARTBEAT_TIMEOUT_SECONDS": "5",
            "PAGE_RETRY_INITIAL_SECONDS": "0.2",
            "SHUTDOWN_GRACE_SECONDS": "5",
            "WORKER_IDENTITY": identity,
            "NO_PROXY": "127.0.0.1,localhost",
        }
    )
    env.update(overrides or {})
    return env


@dataclass
class Replica:
    """One `python worker.py` process, the identity it polls with and its health port."""

    identity: str
    process: subprocess.Popen[bytes]
    log: Path
    health_port: int

    async def ready(self) -> bool:
        """`/readyz` is 200: checks passed and both pollers run."""
        try:
            async with httpx.AsyncClient(timeout=1) as http:
                response = await http.get(f"http://127.0.0.1:{self.health_port}/readyz")
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    @property
    def pid(self) -> int:
        return self.process.pid

    def signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    async def exit_code(self, within: float) -> int:
        """The exit code; raises `subprocess.TimeoutExpired` if still running after `within`."""
        return await asyncio.to_thread(self.process.wait, within)


@contextmanager
def worker_processes(
    settings: Settings,
    fakes: Fakes,
    count: int,
    log_dir: Path,
    env: Mapping[str, str] | None = None,
) -> Iterator[list[Replica]]:
    """`count` replicas with identities `replica-0`…; on exit each still running gets
    SIGTERM (and is killed if it has not stopped 30 s later)."""
    replicas = []
    for n in range(count):
        log_path = log_dir / f"worker-{n}.log"
        health_port = free_port()
        ops = {"HEALTH_PORT": str(health_port), "OPS_HOST": "127.0.0.1", **(env or {})}
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, str(WORKER_SCRIPT)],
                cwd=log_dir,
                env=worker_env(settings, fakes, f"replica-{n}", ops),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        replicas.append(Replica(f"replica-{n}", process, log_path, health_port))
    try:
        yield replicas
    finally:
        for replica in replicas:
            if replica.process.poll() is None:
                replica.signal(signal.SIGTERM)
        for replica in replicas:
            try:
                replica.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                replica.process.kill()
                replica.process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_until_ready(replicas: list[Replica], within: float = 60) -> None:
    """Wait until every replica's `/readyz` answers 200 (it polls both queues)."""
    async with asyncio.timeout(within):
        for replica in replicas:
            while not await replica.ready():
                assert replica.process.poll() is None, replica.log.read_text()[-3000:]
                await asyncio.sleep(0.1)


async def page_identities(handle: WorkflowHandle[object, object]) -> Counter[str]:
    """Which worker ran each page activity attempt that ended, read from the history (an
    attempt's started event is written when the attempt ends, so a killed attempt that
    timed out is counted under the worker that held it)."""
    scheduled: dict[int, str] = {}
    started: Counter[str] = Counter()
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attrs = event.activity_task_scheduled_event_attributes
            scheduled[event.event_id] = attrs.activity_type.name
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            attrs2 = event.activity_task_started_event_attributes
            if scheduled.get(attrs2.scheduled_event_id) == "illustrate_page":
                started[attrs2.identity] += 1
    return started


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def _connections_to(port: int) -> dict[int, int]:
    """inode -> local port of each established IPv4/IPv6 TCP connection to `port`."""
    found: dict[int, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], int(fields[9])
            if state == "01" and int(remote.rsplit(":", 1)[1], 16) == port:
                found[inode] = int(local.rsplit(":", 1)[1], 16)
    return found


def replica_connected_from(replicas: list[Replica], server_port: int, client_port: int) -> Replica:
    """The replica owning the TCP connection from `client_port` to a local server on
    `server_port` (Linux /proc): the worker whose request a fake server is sitting on."""
    inodes = {
        inode for inode, local in _connections_to(server_port).items() if local == client_port
    }
    for replica in replicas:
        if replica.process.poll() is None and _socket_inodes(replica.pid) & inodes:
            return replica
    raise AssertionError(f"no replica holds a connection from port {client_port}")
