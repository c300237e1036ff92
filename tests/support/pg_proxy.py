"""A TCP proxy between the workers and PostgreSQL that a test can cut and restore.

Why this is a database outage from the application's point of view: the workers only ever
see PostgreSQL through TCP sockets opened by psycopg. While the proxy is cut,

- a new connection is refused (nothing listens on the port), exactly what psycopg gets
  from a PostgreSQL host that is down or restarting: `OperationalError: connection
  refused`;
- every open connection is reset (RST), what a pooled connection gets when the server
  process dies or a failover moves the address: the next statement on it fails with
  `OperationalError` (server closed the connection / connection reset), and SQLAlchemy's
  `pool_pre_ping` discards it and tries to connect anew, which is refused.

Transactions in flight are lost with their connection, as they are when the server dies:
PostgreSQL rolls back a transaction whose client vanished. What the proxy does not model is
a server that accepts connections but hangs; that is the `connect_timeout` path, not tested
here. The machine's shared PostgreSQL cluster, which other tests and people use, is never
touched.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Self

_CHUNK = 64 * 1024


class PostgresProxy:
    """Forwards 127.0.0.1:`port` to `upstream`; `cut()` and `restore()` from any thread."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="pg-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0
        self.connections = 0
        self.resets = 0

    @property
    def is_cut(self) -> bool:
        return self._server is None

    def start(self) -> Self:
        self._thread.start()
        self._call(self._listen())
        return self

    def cut(self) -> None:
        """Refuse new connections and reset every open one."""
        self._call(self._cut())

    def restore(self) -> None:
        """Accept connections again, on the same port."""
        self._call(self._listen())

    def stop(self) -> None:
        self._call(self._cut())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _call(self, coroutine: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    async def _listen(self) -> None:
        if self._server is not None:
            return
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _cut(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()  # the listening socket closes now: new connections are refused
        for writer in list(self._writers):
            _reset(writer)
            self.resets += 1
        self._writers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.is_cut:
            _reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        except OSError:
            _reset(writer)
            return
        self.connections += 1
        self._writers.update((writer, up_writer))
        await asyncio.gather(
            _pipe(reader, up_writer), _pipe(up_reader, writer), return_exceptions=True
        )
        for end in (writer, up_writer):
            self._writers.discard(end)
            end.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
    finally:
        if not writer.is_closing():
            writer.close()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with an RST rather than a FIN (SO_LINGER with a zero timeout)."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
