"""Both ways into your own FastAPI backend, as docs/web.md shows them: the whole app
mounted under a prefix (its lifespan entered from yours), or the router included with
the connections from `storywink_services`, and the Python clients beside it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import uvicorn
from fastapi import FastAPI

from storywink.config import Settings
from storywink.db.connection import Database
from storywink.web import create_app, router, storywink_services
from storywink.web.problems import install_problem_handlers
from storywink.web.services import Services
from tests.support.helpers import create_book
from tests.support.web_app import QuietServer, bearer, token_for
from tests.support.worker_processes import free_port

USER = "parent-mounted"


@contextlib.asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[str]:
    port = free_port()
    server = QuietServer(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(30):
        while not server.started:
            assert not task.done()
            await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def test_the_app_mounted_and_the_router_included(
    database: Database, web_settings: Settings
) -> None:
    book_id = create_book(database, [None], user_id=USER)
    storywink_app = create_app(web_settings)

    @contextlib.asynccontextmanager
    async def mounting(app: FastAPI) -> AsyncIterator[None]:
        async with storywink_app.router.lifespan_context(storywink_app):
            yield

    mounted = FastAPI(lifespan=mounting)
    mounted.mount("/storywink", storywink_app)

    seen_clients: list[Services] = []

    @contextlib.asynccontextmanager
    async def including(app: FastAPI) -> AsyncIterator[None]:
        async with storywink_services(app, web_settings) as services:
            seen_clients.append(services)
            yield

    included = FastAPI(lifespan=including)
    install_problem_handlers(included)
    included.include_router(router, prefix="/api")

    headers = bearer(token_for(USER))
    for app, prefix in ((mounted, "/storywink"), (included, "/api")):
        async with serving(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as http:
            book = await http.get(f"{prefix}/books/{book_id}", headers=headers)
            other = await http.get(f"{prefix}/books/{book_id}", headers=bearer(token_for("x")))
            ready = await http.get(f"{prefix}/readyz")
            if app is included:  # your own routes call the same clients
                progress = await seen_clients[0].illustrations.illustration_progress(book_id)
                assert progress.total == 1
        assert book.status_code == 200, book.text
        assert other.status_code == 404 and other.headers["content-type"] == (
            "application/problem+json"
        )
        assert ready.status_code == 200
