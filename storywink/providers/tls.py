"""One TLS context for every HTTPS client of a process.

Building a verifying context loads the whole CA bundle (tens of milliseconds); the Gemini
SDK would build three per client and httpx one per client. A client-side context is safe
to share between connections and threads.
"""

from __future__ import annotations

import functools
import os
import ssl

import certifi


@functools.cache
def verifying_context() -> ssl.SSLContext:
    """The CA bundle the SDKs use by default (certifi), or SSL_CERT_FILE / SSL_CERT_DIR."""
    return ssl.create_default_context(
        cafile=os.environ.get("SSL_CERT_FILE", certifi.where()),
        capath=os.environ.get("SSL_CERT_DIR"),
    )
