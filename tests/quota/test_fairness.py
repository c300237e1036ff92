"""Pages are served fairly between parents and by a book's priority, through a real dev
server with Temporal's fairness on (storywink.temporal.server_config), one worker drawing one page
at a time so the page queue is backlogged:

- a parent's big book started first, other parents' small books just after: the small books
  finish before the big one (first-come first-served would finish them after it);
- a book started with priority 1 after a backlog of the same parent's book: its pages
  overtake the backlog.

The test fails on a server without fairness (see the FIFO control) or if the workflow stops
setting the pages' Priority.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from pathlib import Path

import pytest
from pydantic import ValidationError
from temporalio.client import WorkflowHandle

from storywink.contract import BookOutcome, BookStatus, IllustrationRequest
from storywink.db.connection import Database
from storywink.temporal.connection import connect_temporal
from storywink.temporal.server_config import FAIRNESS, ONE_PARTITION
from tests.support.helpers import create_book, keep_history, running_worker, start
from tests.support.provider_fakes import Fakes, SettingsFactory
from tests.support.temporal_server import dev_server

LATENCY = 0.25  # model latency: a big book of BIG pages takes ~BIG x (LATENCY + overhead)
BIG, SMALL, SMALL_BOOKS = 14, 2, 3


async def _finish_times(
    handles: Mapping[str, WorkflowHandle[object, BookOutcome]],
) -> dict[str, float]:
    started = time.monotonic()

    async def finished(handle: WorkflowHandle[object, BookOutcome]) -> float:
        outcome = await handle.result()
        assert outcome.status is BookStatus.COMPLETED
        return time.monotonic() - started

    times = await asyncio.wait_for(
        asyncio.gather(*(finished(handle) for handle in handles.values())), timeout=90
    )
    return dict(zip(handles, times, strict=True))


async def _big_then_small(
    database: Database,
    fakes: Fakes,
    provider_settings: SettingsFactory,
    tmp_path: Path,
    dynamic_config: Mapping[str, str],
    small_priority: int | None = None,
    small_owners: tuple[str, ...] = ("parent-b", "parent-c", "parent-d"),
    history: str | None = None,
) -> dict[str, float]:
    fakes.gemini.set_latency(LATENCY)
    big = create_book(database, fakes.photo_urls("big", BIG), user_id="parent-a")
    small = [
        create_book(database, fakes.photo_urls(f"small{n}", SMALL), user_id=owner)
        for n, owner in enumerate(small_owners)
    ]
    async with dev_server(tmp_path, dynamic_config) as server:
        settings = provider_settings(temporal_address=server.address, illustration_concurrency=1)
        client = await connect_temporal(settings)
        async with running_worker(client, settings, database):
            handles = {"big": await start(client, settings, big)}
            await asyncio.sleep(1.0)  # the big book's pages are queued by now
            for n, book_id in enumerate(small):
                handles[f"small{n}"] = await start(client, settings, book_id, small_priority)
            times = await _finish_times(handles)
            if history:
                await keep_history(handles["small0"], history)
            return times


async def test_other_parents_small_books_finish_before_a_big_book_started_first(
    database: Database,
    fakes: Fakes,
    provider_settings: SettingsFactory,
    tmp_path: Path,
) -> None:
    times = await _big_then_small(
        database, fakes, provider_settings, tmp_path, {**FAIRNESS, **ONE_PARTITION}
    )
    print({name: round(t, 2) for name, t in times.items()})
    assert max(t for name, t in times.items() if name != "big") < times["big"]


async def test_without_fairness_small_books_wait_for_the_big_one(
    database: Database,
    fakes: Fakes,
    provider_settings: SettingsFactory,
    tmp_path: Path,
) -> None:
    """The control: the same run on a server without fairness is first-come first-served."""
    times = await _big_then_small(
        database,
        fakes,
        provider_settings,
        tmp_path,
        {**ONE_PARTITION, "matching.enableFairness": "false"},
    )
    print({name: round(t, 2) for name, t in times.items()})
    assert min(t for name, t in times.items() if name != "big") > 0.8 * times["big"]


async def test_a_priority_book_overtakes_a_backlog_of_the_same_parent(
    database: Database,
    fakes: Fakes,
    provider_settings: SettingsFactory,
    tmp_path: Path,
) -> None:
    times = await _big_then_small(
        database,
        fakes,
        provider_settings,
        tmp_path,
        {**FAIRNESS, **ONE_PARTITION},
        small_priority=1,
        small_owners=("parent-a",),
        history="priority_with_fairness_key",
    )
    print({name: round(t, 2) for name, t in times.items()})
    assert times["small0"] < 0.5 * times["big"]


@pytest.mark.parametrize("priority", [0, 6])
def test_a_priority_outside_1_to_5_is_refused(priority: int) -> None:
    with pytest.raises(ValidationError):
        IllustrationRequest(book_id="b", priority=priority)


def test_a_start_without_priority_sends_the_input_older_workers_accept() -> None:
    assert IllustrationRequest(book_id="b").model_dump() == {"book_id": "b"}
    assert IllustrationRequest(book_id="b", priority=1).model_dump() == {
        "book_id": "b",
        "priority": 1,
    }
