"""A worker's view of a fleet-wide fault: the key, model or CDN credentials refused.

The page activity reports a `FleetFault` here instead of settling the page; the worker's
page poller (`storywink.worker.page_work`) waits on it, stops taking pages, probes the
provider cheaply and takes pages again once the fault has cleared.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ActiveFault:
    setting: str  # what an operator fixes: GEMINI_API_KEY, CLOUDINARY_URL, the model setting
    reason: str  # short, secret-free (the provider error's reason)
    since: float = field(default_factory=time.monotonic)


class FleetHealth:
    """The fault this worker met, if any. One event loop (the worker's) uses it."""

    def __init__(self) -> None:
        self._fault: ActiveFault | None = None
        self._faulted: asyncio.Event | None = None

    @property
    def fault(self) -> ActiveFault | None:
        return self._fault

    def report(self, setting: str, reason: str) -> None:
        """The first report of a fault wins; later ones (other pages) change nothing."""
        if self._fault is None:
            self._fault = ActiveFault(setting, reason)
            self._event().set()

    def clear(self) -> None:
        self._fault = None
        self._event().clear()

    async def wait_faulted(self) -> ActiveFault:
        await self._event().wait()
        assert self._fault is not None
        return self._fault

    def _event(self) -> asyncio.Event:
        if self._faulted is None:  # made on first use, inside the worker's loop
            self._faulted = asyncio.Event()
        return self._faulted
