"""Our own Temporal dev servers (`temporal server start-dev`), on free ports: file-backed
for tests that crash it or need server settings the shared one has not, and the one the
xdist workers of a parallel run share (in memory)."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from temporalio.client import Client
from temporalio.service import RPCError

from storywink import contract
from tests.support.services import tool_path
from tests.support.worker_processes import free_port


class DevServer:
    """Our own file-backed `temporal server start-dev`, which the test may crash."""

    def __init__(
        self,
        directory: Path,
        dynamic_config: Mapping[str, str] | None = None,
        search_attributes: Mapping[str, str] | None = None,
        in_memory: bool = False,
    ) -> None:
        """`search_attributes` (name -> type) replaces ours, which are registered by default.
        `in_memory`: no database file (nothing survives a restart)."""
        self.dynamic_config = dict(dynamic_config or {})
        self.search_attribute_flags: Sequence[str] = (
            contract.dev_server_search_attribute_flags()
            if search_attributes is None
            else [
                arg
                for name, kind in search_attributes.items()
                for arg in ("--search-attribute", f"{name}={kind}")
            ]
        )
        self.db: Path | None = None if in_memory else directory / "temporal.db"
        self.log = directory / "temporal.log"
        self.port, self.http_port, self.metrics_port = free_port(), free_port(), free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _spawn(self) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as log:
            return subprocess.Popen(
                [
                    tool_path("temporal"),
                    "server",
                    "start-dev",
                    "--ip",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--http-port",
                    str(self.http_port),
                    "--metrics-port",
                    str(self.metrics_port),
                    "--headless",
                    *(["--db-filename", str(self.db)] if self.db is not None else []),
                    "--log-level",
                    "error",
                    *self.search_attribute_flags,
                    *(
                        arg
                        for key, value in self.dynamic_config.items()
                        for arg in ("--dynamic-config-value", f"{key}={value}")
                    ),
                ],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
            )

    def spawn(self) -> None:
        """Start (or restart, on the same file and ports); `await answering(...)` for it."""
        self.process = self._spawn()

    async def start(self) -> None:
        """Start (or restart, on the same file and ports) and wait until it answers."""
        self.spawn()
        await answering(self.address, self)

    def kill(self) -> None:
        """Crash it: SIGKILL, no chance to flush or say goodbye."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


async def answering(address: str, server: DevServer | None = None) -> Client:
    """A client of the server at `address` once it answers (30 s at most); fails early,
    with its log, if our `server` exits."""
    async with asyncio.timeout(30):
        while True:
            if server is not None and server.process is not None:
                assert server.process.poll() is None, server.log.read_text()[-2000:]
            try:
                client = await Client.connect(address, data_converter=contract.DATA_CONVERTER)
                await client.service_client.check_health()
                return client
            except (RuntimeError, RPCError):  # not listening, or not serving yet
                await asyncio.sleep(0.2)


@asynccontextmanager
async def dev_server(
    directory: Path,
    dynamic_config: Mapping[str, str] | None = None,
    search_attributes: Mapping[str, str] | None = None,
) -> AsyncIterator[DevServer]:
    server = DevServer(directory, dynamic_config, search_attributes)
    await server.start()
    try:
        yield server
    finally:
        server.kill()
