"""The background heartbeat of the activities that wait on a model (a page, a story).

Beats in the background let a dead worker be noticed within the heartbeat timeout, and let
a cancel reach the activity while it waits. Each beat carries the latest checkpoint the
attempt recorded; until it records one, the checkpoint an earlier attempt left, so the
attempt after this one still knows it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from temporalio import activity

Checkpoint = TypeVar("Checkpoint", bound=BaseModel)


class Heartbeat:
    def __init__(self) -> None:
        self._earlier = tuple(activity.info().heartbeat_details)[:1]
        self._details = self._earlier

    def earlier(self, kind: type[Checkpoint]) -> Checkpoint | None:
        """The checkpoint an earlier attempt left, if it left one this code reads."""
        if not self._earlier:
            return None
        try:
            return kind.model_validate(self._earlier[0])
        except ValidationError:  # details from an older worker version: ignore them
            return None

    def checkpoint(self, checkpoint: BaseModel) -> None:
        self._details = (checkpoint.model_dump(mode="json", exclude_defaults=True),)
        activity.heartbeat(*self._details)

    async def _beat_forever(self, interval: float) -> None:
        while True:
            activity.heartbeat(*self._details)
            await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def heartbeating() -> AsyncIterator[Heartbeat]:
    """Heartbeat in the background, three times per heartbeat timeout (10 s at most)."""
    timeout = activity.info().heartbeat_timeout
    interval = max(0.2, min(timeout.total_seconds() / 3, 10.0)) if timeout else 10.0
    heartbeat = Heartbeat()
    beating = asyncio.create_task(heartbeat._beat_forever(interval))
    try:
        yield heartbeat
    finally:
        beating.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beating
