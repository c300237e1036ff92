"""The worker's HTTP liveness and readiness: `/healthz` and `/readyz` on HEALTH_PORT.

`/healthz` answers 200 while the process serves at all. `/readyz` answers 200 only once
the start-up checks passed and the pollers run, and 503 before that and while stopping,
so an orchestrator neither routes to nor counts a worker that cannot take work.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from enum import StrEnum

from aiohttp import web

from storywink.config import ConfigurationError

log = logging.getLogger("storywink.health")


class State(StrEnum):
    STARTING = "starting"
    READY = "ready"
    PAUSED = "paused"  # a fleet-wide fault: no page work until it clears
    STOPPING = "stopping"


class Readiness:
    """Where the worker is in its life; `/readyz` reports it."""

    def __init__(self) -> None:
        self.state = State.STARTING

    @property
    def ready(self) -> bool:
        return self.state is State.READY


def health_app(readiness: Readiness) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        status = 200 if readiness.ready else 503
        return web.Response(status=status, text=f"{readiness.state.value}\n")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


@asynccontextmanager
async def serve_health(
    host: str, port: int | None, readiness: Readiness
) -> AsyncIterator[int | None]:
    """Serve the endpoints on `port` (0: any free port) and yield the bound port; no
    server when `port` is None."""
    if port is None:
        yield None
        return
    runner = web.AppRunner(health_app(readiness), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            raise ConfigurationError(f"HEALTH_PORT {port} on {host}: {exc}") from None
        bound: int = runner.addresses[0][1]
        log.info("health on http://%s:%d (/healthz, /readyz)", host, bound)
        yield bound
    finally:
        await runner.cleanup()
