"""Keep secrets out of logs, failure messages and workflow history."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

_MASK = "[redacted]"
# Credentials that can ride along in URLs or provider messages whatever their value.
_PATTERNS = (
    re.compile(r"(?i)([?&](?:key|api_key|signature|token|sig|x-goog-api-key)=)[^&\s\"']+"),
    re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^:/@\s]+:)[^@\s]+(@)"),
)


class Redactor:
    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self._secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def __call__(self, text: str, limit: int = 500) -> str:
        for secret in self._secrets:
            text = text.replace(secret, _MASK)
        text = _PATTERNS[0].sub(rf"\1{_MASK}", text)
        text = _PATTERNS[1].sub(rf"\1{_MASK}\2", text)
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
