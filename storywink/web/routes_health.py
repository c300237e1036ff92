"""Health (no token needed): the process runs; the database and Temporal answer."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Final

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import Engine, text

from storywink.web.routes_books import ServicesDep
from storywink.web.schemas import Health

router = APIRouter(tags=["health"])
CHECK_TIMEOUT: Final = timedelta(seconds=3)


@router.get("/healthz", response_model=Health, summary="The process runs")
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    responses={503: {"model": Health}},
    summary="The database and Temporal answer",
)
async def readyz(app: ServicesDep) -> Response:
    database = await _database_answers(app.database.engine)
    try:
        await app.temporal.service_client.check_health(timeout=CHECK_TIMEOUT)
        temporal = "ok"
    except Exception as exc:
        temporal = f"unavailable ({type(exc).__name__})"
    ready = database == "ok" and temporal == "ok"
    body = Health(status="ok" if ready else "unavailable", database=database, temporal=temporal)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


async def _database_answers(engine: Engine) -> str:
    def ping() -> None:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    try:
        await asyncio.wait_for(asyncio.to_thread(ping), CHECK_TIMEOUT.total_seconds())
    except Exception as exc:
        return f"unavailable ({type(exc).__name__})"
    return "ok"


@router.get("/metrics", response_class=Response, summary="Prometheus metrics of this process")
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
