"""The count of paid model calls survives a database outage the run survives: each call is
counted by its ledger row, written before the call (storywink.cost), so with the database
away no call is made, and once it is back every page is drawn and counted once."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import pytest
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from storywink.contract import BookStatus, ModerationStatus
from storywink.db.connection import Database
from storywink.db.engine import make_engine, make_session_factory
from storywink.providers.base import SourceImage
from storywink.providers.factory import build_providers
from storywink.providers.fetch import ImageFetcher
from tests.support.helpers import (
    running_worker,
    start,
    wait_until,
)
from tests.support.pg_proxy import PostgresProxy
from tests.support.pipeline import Pipeline


class HeldFetcher(ImageFetcher):
    """The real fetcher; photos wait for `release` (before the model call is counted)."""

    def __init__(self, inner: ImageFetcher) -> None:
        self._inner = inner
        self.waiting = 0
        self.release = asyncio.Event()

    async def fetch(self, url: str, role: str) -> SourceImage:
        if role == "photo":
            self.waiting += 1
            await self.release.wait()
        return await self._inner.fetch(url, role)

    async def aclose(self) -> None:
        await self._inner.aclose()


@contextmanager
def proxied(database_url: str) -> Iterator[tuple[PostgresProxy, str]]:
    url = make_url(database_url)
    with PostgresProxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
        yield proxy, url.set(host="127.0.0.1", port=proxy.port).render_as_string(False)


@pytest.mark.postgresql_only  # an embedded SQLite file cannot become unreachable
async def test_model_calls_made_while_the_database_is_away_are_counted(
    pipeline: Pipeline, database_url: str
) -> None:
    book_id = pipeline.book(3)
    with proxied(database_url) as (proxy, proxied_url):
        cut_off = pipeline.settings.model_copy(
            update={"database_url": SecretStr(proxied_url), "page_retry_attempts": 30}
        )
        engine = make_engine(proxied_url)
        providers = build_providers(cut_off)
        held = HeldFetcher(providers.fetcher)
        try:
            through_proxy = Database(engine, make_session_factory(engine))
            async with running_worker(
                pipeline.client, cut_off, through_proxy, replace(providers, fetcher=held)
            ):
                handle = await start(pipeline.client, cut_off, book_id)
                await wait_until(lambda: held.waiting == 3)
                proxy.cut()  # no page can write its call's row: none calls the model
                held.release.set()
                await asyncio.sleep(2)
                proxy.restore()
                outcome = await asyncio.wait_for(handle.result(), timeout=60)
        finally:
            engine.dispose()

    assert outcome.status is BookStatus.COMPLETED
    book, pages, _ = pipeline.load(book_id)
    assert [p.moderation_status for p in pages] == [ModerationStatus.OK] * 3
    assert [p.model_calls for p in pages] == [1, 1, 1]
    assert book.image_count == 3
