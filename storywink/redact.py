"""Keep secrets out of logs, failure messages and workflow history."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

_MASK = "[redacted]"
_MIN_SECRET_LENGTH = 6  # a toy secret like "s" would shred the text
# Credentials that ride along in URLs, headers or provider messages, whatever their value.
_PATTERNS = (
    (
        re.compile(
            r"(?i)\b(key|api[_-]?key|api_secret|access_token|token|signature|sig)=[^&\s'\"<>()]+"
        ),
        r"\1=" + _MASK,
    ),
    (re.compile(r"(?i)(x-goog-api-key['\"]?\s*[:=]\s*['\"]?)[^\s'\",}]+"), r"\1" + _MASK),
    (re.compile(r"AIza[0-9A-Za-z_\-]{20,}"), _MASK),  # Google API key shape
    (re.compile(r"(?i)string to sign - '[^']*'"), "string to sign - " + _MASK),  # Cloudinary 401
    (re.compile(r"\b[0-9a-fA-F]{40}(?:[0-9a-fA-F]{24})?\b"), _MASK),  # sha1/sha256 signatures
    (re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^:/@\s]+:)[^@\s]+(@)"), r"\1" + _MASK + r"\2"),
)


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """`text` without the given secrets nor anything shaped like a credential."""
    for secret in sorted({s for s in secrets if s and len(s) >= _MIN_SECRET_LENGTH}, key=len)[::-1]:
        text = text.replace(secret, _MASK)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def shorten(text: str, limit: int) -> str:
    """One line of at most `limit` characters, for reasons shown to people."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


class Redactor:
    """`redact` bound to one process's secrets (API key, CDN secret, database password)."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self._secrets = tuple(secrets)

    def __call__(self, text: str, limit: int = 500) -> str:
        text = redact(text, self._secrets)
        return text if len(text) <= limit else text[: limit - 1] + "…"


class RedactingFilter(logging.Filter):
    """Rewrites every record's message through the redactor before it is emitted."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self._redact = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg = self._redact(message, limit=10_000)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self._redact(
                logging.Formatter().formatException(record.exc_info), 20_000
            )
            record.exc_info = None
        return True
