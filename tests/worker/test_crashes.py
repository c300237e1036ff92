"""What the old system lost work to, done to this one on purpose: a worker killed with
kill -9 mid-upload, the Temporal server crashing and coming back, the database going away
for a while. Every book settles, every page is stored once and paid for once.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from pydantic import SecretStr
from sqlalchemy.engine import make_url
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle

from storywink.contract import BookOutcome, BookStatus, ModerationStatus
from storywink.cost.report import book_cost
from storywink.db.connection import Database
from storywink.db.engine import make_engine, make_session_factory
from storywink.temporal.connection import connect_temporal
from tests.support.fakes.cloudinary_server import CloudFault
from tests.support.helpers import (
    create_book,
    load_book,
    picture_id,
    running_worker,
    start,
    wait_until,
)
from tests.support.pg_proxy import PostgresProxy
from tests.support.pipeline import Pipeline
from tests.support.provider_fakes import Fakes, SettingsFactory
from tests.support.temporal_server import dev_server
from tests.support.worker_processes import (
    page_identities,
    replica_connected_from,
    wait_until_ready,
    worker_processes,
)

pytestmark = pytest.mark.process

HEARTBEAT_TIMEOUT = 5.0  # PAGE_HEARTBEAT_TIMEOUT_SECONDS of the replicas (worker_env)


async def _max_page_attempt(handle: WorkflowHandle[object, BookOutcome]) -> int:
    attempts = [
        event.activity_task_started_event_attributes.attempt
        async for event in handle.fetch_history_events()
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
    ]
    return max(attempts, default=0)


def _assert_drawn_once(
    fakes: Fakes, database: Database, book_id: str, *, counted_exactly: bool = True
) -> None:
    """Every page OK, stored exactly once, paid for exactly once; one notification.

    `pages.model_calls` is counted by the call's ledger row, written before the call. A
    row whose commit went through but whose answer the cut lost, after the attempt's
    retries, is left open and counted (at most once more a call, "may have been billed"):
    `fakes.gemini` has the calls really made. Each delivered page cost one image."""
    book, pages, notes = load_book(database, book_id)
    assert book.status is BookStatus.COMPLETED
    assert len(notes) == 1
    for page in pages:
        public_id = picture_id(database, book_id, page.page_number)
        assert page.moderation_status is ModerationStatus.OK
        assert fakes.cloudinary.uploads_of(public_id) == 1, public_id
        asset = fakes.cloudinary.asset(public_id)
        assert asset is not None and asset.delivery_type == "authenticated"
        assert page.generated_asset_id == public_id
        if counted_exactly:
            assert page.model_calls == 1, f"page {page.page_number} counted {page.model_calls}"
        else:
            assert 1 <= page.model_calls <= 2, f"page {page.page_number}: {page.model_calls}"
    # Never paying twice, in money: each delivered page cost one image's price (an answer
    # that came while the database was away is priced when it is back).
    with database.sessions() as session:
        cost = book_cost(session, book_id)
    one_image = round(cost.pages[1].cost_usd * 1e6)
    assert one_image > 0
    for page in pages:
        line = cost.pages[page.page_number]
        assert (line.answered, round(line.cost_usd * 1e6)) == (1, one_image), line
        assert line.unknown_cost_calls == 0
        if counted_exactly:  # else a count whose commit's answer was lost stays open
            assert line.maybe_billed_calls == 0, line


# ----- a worker killed with kill -9 -----


async def test_worker_killed_after_upload_pages_finish_elsewhere_without_redrawing(
    fake_pipeline: Pipeline, fakes: Fakes, tmp_path: Path
) -> None:
    """kill -9 a replica while it holds three pages whose images the CDN has stored but not
    yet confirmed: another replica finishes them within the heartbeat timeout plus a few
    seconds, finds each stored image by its id and run, and neither redraws nor re-uploads."""
    fakes.cloudinary.fail_next_uploads(9, CloudFault.stored_then_hang(60))
    book_id = fake_pipeline.book(9, photos="kill")
    cdn_port = urlsplit(fakes.cloudinary.base_url).port or 0
    with worker_processes(fake_pipeline.settings, fakes, 3, tmp_path) as replicas:
        await wait_until_ready(replicas)
        handle = await fake_pipeline.start(book_id)
        # Three pages per replica (ILLUSTRATION_CONCURRENCY=3): all nine stored, unanswered.
        await wait_until(lambda: len(fakes.cloudinary.held_uploads) == 9)
        held = fakes.cloudinary.held_uploads
        owners = {
            public_id: replica_connected_from(replicas, cdn_port, port).identity
            for public_id, port in held.items()
        }
        victim = next(
            r
            for r in replicas
            if r.identity == owners[picture_id(fake_pipeline.database, book_id, 1)]
        )
        victim_pages = sorted(pid for pid, owner in owners.items() if owner == victim.identity)
        victim.signal(signal.SIGKILL)
        killed = time.monotonic()
        await victim.exit_code(within=5)
        fakes.cloudinary.release_held_uploads()  # the survivors get their answers

        def victim_pages_recorded() -> bool:
            _, pages, _ = fake_pipeline.load(book_id)
            recorded = {
                picture_id(fake_pipeline.database, book_id, p.page_number)
                for p in pages
                if p.picture_ref
            }
            return set(victim_pages) <= recorded

        await wait_until(victim_pages_recorded, within=HEARTBEAT_TIMEOUT + 10)
        recovered_after = time.monotonic() - killed
        outcome = await asyncio.wait_for(handle.result(), timeout=60)
        identities = await page_identities(handle)

    print(
        f"kill -9 of {victim.identity} holding {len(victim_pages)} stored pages: "
        f"recorded by the survivors {recovered_after:.1f}s later"
    )
    assert len(victim_pages) == 3
    assert recovered_after < HEARTBEAT_TIMEOUT + 3, f"recovered after {recovered_after:.1f}s"
    assert outcome.status is BookStatus.COMPLETED
    # Each page's last attempt ran on a survivor; the victim completed nothing.
    assert sum(identities.values()) == 9 and victim.identity not in identities
    assert fakes.gemini.call_count == 9  # the three stored images were not drawn again
    assert fakes.cloudinary.admin_calls == 3  # each found once by its id (run id checked)
    _assert_drawn_once(fakes, fake_pipeline.database, book_id)


# ----- the Temporal server stopped and restarted -----


async def test_temporal_server_crash_and_restart_mid_run_every_book_settles(
    database: Database,
    fakes: Fakes,
    provider_settings: SettingsFactory,
    tmp_path: Path,
) -> None:
    """Seed validation test 4 (the backing store, Redis there, killed during processing):
    the Temporal server is killed while pages are drawn and restarted 3 s later on the
    same file: the worker reconnects, the runs carry on from their history, every book
    settles, and nothing is drawn or stored twice."""
    async with dev_server(tmp_path) as server:
        settings = provider_settings(temporal_address=server.address)
        client = await connect_temporal(settings)
        fakes.gemini.set_latency(1.5)
        book_ids = [create_book(database, fakes.photo_urls(f"tsr{n}", 4)) for n in range(2)]
        async with running_worker(client, settings, database):
            handles = [await start(client, settings, book_id) for book_id in book_ids]
            await wait_until(lambda: fakes.gemini.call_count >= 4)
            server.kill()
            crashed = time.monotonic()
            await asyncio.sleep(3)
            await server.start()
            print(f"temporal server down for {time.monotonic() - crashed:.1f}s")
            outcomes = await asyncio.wait_for(
                asyncio.gather(*(handle.result() for handle in handles)), timeout=60
            )

    assert [outcome.status for outcome in outcomes] == [BookStatus.COMPLETED] * 2
    assert fakes.gemini.call_count == 8
    for book_id in book_ids:
        _assert_drawn_once(fakes, database, book_id)


# ----- PostgreSQL unreachable for a while -----


@contextmanager
def _proxied(database_url: str) -> Iterator[tuple[PostgresProxy, str]]:
    url = make_url(database_url)
    with PostgresProxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
        proxied = url.set(host="127.0.0.1", port=proxy.port)
        yield proxy, proxied.render_as_string(hide_password=False)


@pytest.mark.postgresql_only  # an embedded SQLite file cannot become unreachable
async def test_postgresql_unreachable_mid_run_activities_retry_and_nothing_is_duplicated(
    fake_pipeline: Pipeline, database_url: str, fakes: Fakes
) -> None:
    """Every database connection of the worker is cut for 4 s while pages are being drawn
    (tests/support/pg_proxy.py: as far as the app can tell, that is PostgreSQL going away).
    Activities retry through it; both books settle, each page drawn, stored and recorded
    once, one notification per book."""
    fakes.gemini.set_latency(1.0)
    book_ids = [fake_pipeline.book(4, photos=f"pg{n}") for n in range(2)]
    with _proxied(database_url) as (proxy, proxied_url):
        settings = fake_pipeline.configure(page_retry_attempts=30, page_retry_max_seconds=0.5)
        engine = make_engine(proxied_url)
        proxied = replace(
            fake_pipeline,
            settings=settings.model_copy(update={"database_url": SecretStr(proxied_url)}),
            database=Database(engine, make_session_factory(engine)),
        )
        try:
            async with proxied.worker():
                handles = [await proxied.start(book_id) for book_id in book_ids]
                await wait_until(lambda: fakes.gemini.call_count >= 2)
                proxy.cut()
                await asyncio.sleep(4)
                for handle in handles:  # nothing settled while the database was away
                    assert (await handle.describe()).close_time is None
                proxy.restore()
                outcomes = await asyncio.wait_for(
                    asyncio.gather(*(handle.result() for handle in handles)), timeout=60
                )
                attempts = [await _max_page_attempt(handle) for handle in handles]
        finally:
            engine.dispose()

    print(f"connections reset by the outage: {proxy.resets}; page attempts {attempts}")
    assert proxy.resets > 0
    assert max(attempts) > 1  # pages failed during the outage and were retried
    assert [outcome.status for outcome in outcomes] == [BookStatus.COMPLETED] * 2
    assert fakes.gemini.call_count == 8  # each of the 8 pages paid for once
    for book_id in book_ids:
        _assert_drawn_once(fakes, fake_pipeline.database, book_id, counted_exactly=False)
