"""The web backend on a real port (uvicorn, in this process and event loop), and tokens."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import jwt
import uvicorn

from storywink.config import Settings
from storywink.demo.sample_book import sample_photo_bytes
from storywink.web import create_app
from tests.support.worker_processes import free_port

WEB_SECRET = "test-web-secret-0123456789abcdefghijklmnop"
WEB_SETTINGS: dict[str, object] = {
    "web_jwt_secret": WEB_SECRET,
    "web_progress_interval_seconds": 0.2,
}


class QuietServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the test runner keeps its own signal handlers


@contextlib.asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[str]:
    """The app of `create_app(settings)` served on a free port; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(
        create_app(settings),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=1,  # open event streams do not hold the test up
    )
    server = QuietServer(config)
    serving = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(30):
            while not server.started:
                if serving.done():
                    serving.result()
                    raise RuntimeError("the web app stopped before it started")
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving


def token_for(
    user_id: str, *, secret: str = WEB_SECRET, lifetime: float = 600, **claims: Any
) -> str:
    now = int(time.time())
    payload: dict[str, object] = {"sub": user_id, "iat": now, "exp": now + int(lifetime)}
    payload.update(claims)
    return jwt.encode(payload, secret, algorithm="HS256")


def photo_parts(count: int) -> list[tuple[str, tuple[str, bytes, str]]]:
    """`count` sample photos as the `photos` parts of a multipart upload."""
    return [
        ("photos", (f"photo-{n}.jpg", sample_photo_bytes(n), "image/jpeg"))
        for n in range(1, count + 1)
    ]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@contextlib.asynccontextmanager
async def api_client(base_url: str, user_id: str | None = None) -> AsyncIterator[httpx.AsyncClient]:
    headers = bearer(token_for(user_id)) if user_id else {}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as http:
        yield http


@contextlib.contextmanager
def app_in_thread(settings: Settings) -> Iterator[str]:
    """The app served from a thread with its own event loop, for synchronous clients
    (schemathesis) that would block the test's loop; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(
        create_app(settings),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=1,
    )
    server = QuietServer(config)
    thread = threading.Thread(target=server.run, name="web app", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the web app did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
