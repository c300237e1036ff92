"""Logging set-up for the worker and CLI: secrets redacted, JSON on request."""

from __future__ import annotations

import json
import logging
from typing import Any

from storywink.config import Settings
from storywink.redact import RedactingFilter, Redactor

# Attributes the Temporal SDK attaches to activity/workflow log records (workflow_id,
# attempt, activity_type, ...); their fields are flattened into the entry.
_CONTEXT_KEYS = ("temporal_activity", "temporal_workflow")
# Attributes our code passes with `extra=`, copied as they are.
EXTRA_KEYS = ("book_id", "page_number")


class JsonFormatter(logging.Formatter):
    def __init__(self, worker_identity: str | None = None) -> None:
        super().__init__()
        self._identity = worker_identity

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self._identity:
            entry["worker_identity"] = self._identity
        for key in EXTRA_KEYS:
            if (value := getattr(record, key, None)) is not None:
                entry[key] = value
        for key in _CONTEXT_KEYS:
            if isinstance(value := getattr(record, key, None), dict):
                entry.update(value)
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, default=str)


def configure_logging(settings: Settings, worker_identity: str | None = None) -> None:
    """Log to stderr; JSON entries carry `worker_identity` when given."""
    handler = logging.StreamHandler()
    handler.addFilter(RedactingFilter(Redactor(settings.secrets())))
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter(worker_identity))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    # The HTTP clients log every request at INFO: several lines a page, each redacted and
    # written (6 % of a worker's interpreter samples in bench throughput). DEBUG shows them.
    if root.getEffectiveLevel() > logging.DEBUG:
        for chatty in ("httpx", "httpcore"):
            logging.getLogger(chatty).setLevel(logging.WARNING)
