"""The web backend as an ASGI application: `create_app(settings)`, or `router` and
`storywink_services` to add the routes to your own FastAPI app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from storywink.config import Settings
from storywink.web import (
    routes_books,
    routes_events,
    routes_health,
    routes_page,
    routes_runs,
    routes_session,
)
from storywink.web.problems import install_problem_handlers
from storywink.web.services import Services

router = APIRouter()
for _module in (
    routes_health,
    routes_session,
    routes_books,
    routes_runs,
    routes_events,
    routes_page,
):
    router.include_router(_module.router)


@asynccontextmanager
async def storywink_services(app: FastAPI, settings: Settings) -> AsyncIterator[Services]:
    """Open the process's connections for `app` (its routes find them in `app.state`);
    closed on exit. Use it in your own app's lifespan when you include `router`."""
    opened = await Services.open(settings)
    app.state.storywink = opened
    try:
        yield opened
    finally:
        await opened.close()


def create_app(settings: Settings) -> FastAPI:
    """The whole web backend: API, live page, health, problem answers."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with storywink_services(app, settings):
            yield

    app = FastAPI(
        title="Storywink",
        summary="Turn a parent's photos into an illustrated children's book.",
        version="1",
        lifespan=lifespan,
    )
    install_problem_handlers(app)
    app.include_router(router)
    return app
