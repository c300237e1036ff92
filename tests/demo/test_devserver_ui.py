"""Where the demo says the Temporal Web UI is: only where it is known or found."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from storywink.config import load_settings
from storywink.demo.devserver import UI_PORT, UI_SETTINGS_PATH, web_ui_url
from tests.support.worker_processes import free_port

# The start of what the Temporal UI (2.x) answers at /api/v1/settings.
UI_SETTINGS = {"Auth": {"Enabled": False, "Options": None}, "DefaultNamespace": "", "Version": "2"}


@asynccontextmanager
async def serving(path: str, response: web.Response) -> AsyncIterator[int]:
    """A web server on a free port answering GET `path` with `response`; its port."""

    async def handle(_: web.Request) -> web.Response:
        return response

    app = web.Application()
    app.router.add_get(path, handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()


async def probe(port: int, started: bool = False, **values: str) -> str | None:
    settings = load_settings(temporal_address="127.0.0.1:7233", **values)
    return await asyncio.to_thread(web_ui_url, settings, started=started, probe_port=port)


async def test_configured_url_wins() -> None:
    url = "https://temporal.example.com/ui/"
    assert await probe(free_port(), temporal_ui_url=url) == url.rstrip("/")


async def test_dev_server_we_started_has_its_ui_on_the_ui_port() -> None:
    assert await probe(free_port(), started=True) == f"http://127.0.0.1:{UI_PORT}"


async def test_nothing_listening_means_unknown() -> None:
    assert await probe(free_port()) is None


async def test_another_web_server_is_not_taken_for_the_ui() -> None:
    async with serving("/", web.Response(text="<html>not temporal</html>")) as port:
        assert await probe(port) is None


async def test_a_temporal_ui_answering_on_the_host_is_found() -> None:
    async with serving(UI_SETTINGS_PATH, web.json_response(UI_SETTINGS)) as port:
        assert await probe(port) == f"http://127.0.0.1:{port}"
