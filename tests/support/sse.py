"""Reading a Server-Sent Events stream the way a browser does, over httpx."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class Event:
    event: str
    data: str
    id: str | None

    def json(self) -> Any:
        return json.loads(self.data)


async def events_of(response: httpx.Response) -> AsyncIterator[Event]:
    """The stream's events (comments and pings skipped), until it ends."""
    name, event_id = "message", None
    data: list[str] = []
    async for line in response.aiter_lines():
        if not line:
            if data:
                yield Event(name, "\n".join(data), event_id)
            name, data, event_id = "message", [], None
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)
        elif field == "id":
            event_id = value


async def collect_until_outcome(
    http: httpx.AsyncClient, path: str, headers: dict[str, str] | None = None
) -> list[Event]:
    """Every event of one stream, which ends after its `outcome`."""
    collected = []
    async with http.stream("GET", path, headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        async for event in events_of(response):
            collected.append(event)
            if event.event == "outcome":
                break
    return collected


async def until_outcome(events: AsyncIterator[Event]) -> AsyncIterator[Event]:
    """The events up to and with the `outcome`."""
    async for event in events:
        yield event
        if event.event == "outcome":
            return
