"""What one process of the web backend holds: one Temporal client, one database engine,
the existing clients built on them, the token verifier and the book watchers."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from fastapi import Request
from temporalio.client import Client

from storywink.config import Settings
from storywink.db.connection import Database, open_database
from storywink.erasure.client import ErasureClient
from storywink.illustration.client import IllustrationClient
from storywink.pictures import PictureSigner, picture_signer
from storywink.providers.base import ImageStore
from storywink.providers.factory import build_store
from storywink.story.client import StoryClient
from storywink.temporal.connection import connect_temporal
from storywink.web.auth import TokenVerifier
from storywink.web.uploads import UploadLimits
from storywink.web.watchers import WatcherRegistry


@dataclass(frozen=True)
class Services:
    settings: Settings
    database: Database
    temporal: Client
    illustrations: IllustrationClient
    stories: StoryClient
    erasures: ErasureClient
    store: ImageStore
    pictures: PictureSigner
    verifier: TokenVerifier
    watchers: WatcherRegistry
    upload_limits: UploadLimits

    @classmethod
    async def open(cls, settings: Settings) -> Services:
        """Connect through the existing helpers (profile, TLS and API key included)."""
        verifier = TokenVerifier(settings)
        database = await asyncio.to_thread(open_database, settings)
        temporal = await connect_temporal(settings)
        illustrations = IllustrationClient(
            temporal,
            database.sessions,
            settings.temporal_task_queue,
            settings.temporal_illustration_task_queue,
        )
        store = build_store(settings)
        return cls(
            settings=settings,
            database=database,
            temporal=temporal,
            illustrations=illustrations,
            stories=StoryClient(temporal, database.sessions, settings.temporal_task_queue),
            erasures=ErasureClient(temporal, database.sessions, settings.temporal_task_queue),
            store=store,
            pictures=picture_signer(settings, store),
            verifier=verifier,
            watchers=WatcherRegistry(
                illustrations, database.sessions, settings.web_progress_interval_seconds
            ),
            upload_limits=UploadLimits(
                max_photos=settings.web_max_photos,
                max_photo_bytes=settings.max_fetch_bytes,
                max_total_bytes=settings.web_max_upload_bytes,
            ),
        )

    async def close(self) -> None:
        await self.watchers.close()
        self.database.engine.dispose()


def services(request: Request) -> Services:
    """The process's services (a FastAPI dependency)."""
    found = request.app.state.storywink
    assert isinstance(found, Services)
    return found
