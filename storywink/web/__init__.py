"""Storywink as an HTTP service a web app calls (FastAPI): `create_app(settings)`, or
`router` with `storywink_services` in your own app's lifespan. See docs/web.md."""

from storywink.web.app import create_app, router, storywink_services

__all__ = ["create_app", "router", "storywink_services"]
