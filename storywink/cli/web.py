"""`storywink serve` (the web backend) and `storywink token` (a token for local use).

Registered on the `storywink` command by importing this module (`storywink.cli` does).
"""

from __future__ import annotations

from typing import Annotated

import typer

from storywink.cli.commands import app
from storywink.cli.exits import err, one_line_errors, settings_or_exit


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface (default WEB_HOST)")] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="Port (WEB_PORT)")] = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Processes")] = 1,
) -> None:
    """Serve the web backend: the HTTP API, its OpenAPI at /docs, and the live book page."""
    settings = settings_or_exit()
    from storywink.web.auth import TokenVerifier
    from storywink.web.serve import serve as run_server

    with one_line_errors():
        TokenVerifier(settings)  # a bad key stops the start with one line, before uvicorn
    shown_host = host or settings.web_host
    shown_port = port or settings.web_port
    err.print(f"the live book page: http://{shown_host}:{shown_port}/", highlight=False)
    run_server(shown_host, shown_port, workers)


@app.command()
def token(
    user: Annotated[str, typer.Option(help="The parent's account id (the token's sub)")],
    ttl: Annotated[
        int | None, typer.Option(min=60, help="Seconds it is valid (WEB_TOKEN_TTL_SECONDS)")
    ] = None,
) -> None:
    """Print a token for USER signed with the local secret (WEB_JWT_SECRET, else the
    secret file, generated on first use) for the live page or curl."""
    settings = settings_or_exit()
    from storywink.web.auth import issue_local_token

    with one_line_errors():
        print(issue_local_token(settings, user, ttl))
