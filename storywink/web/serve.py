"""`storywink serve`: the web backend under uvicorn, one or more worker processes."""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI

from storywink.config import load_settings
from storywink.logs import configure_logging
from storywink.web.app import create_app


def app_from_environment() -> FastAPI:
    """The app on the settings of the environment (uvicorn's factory, in each process)."""
    settings = load_settings()
    configure_logging(settings)
    return create_app(settings)


def serve(host: str, port: int, workers: int) -> None:
    uvicorn.run(
        "storywink.web.serve:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        proxy_headers=True,
        log_config=None,  # our logging (LOG_FORMAT, LOG_LEVEL), set by the factory
        timeout_graceful_shutdown=5,
    )
