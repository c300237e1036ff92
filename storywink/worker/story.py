"""How a worker serves story generation: what joins the book worker, and the story poller.

The workflow and its book-level activities run on the book task queue beside the
illustration's; the model call runs on its own queue, with STORY_CONCURRENCY per worker
and STORY_RATE_LIMIT (requests per minute) enforced by the server across every worker.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker, WorkerDeploymentConfig

from activities.story_book import StoryBookActivities
from activities.write_story import WriteStoryActivities
from storywink.config import Settings
from storywink.cost.meter import CallMeter
from storywink.db.connection import Database
from storywink.providers.base import ImageStore
from storywink.providers.factory import build_story_writer
from storywink.providers.fetch import ImageFetcher
from storywink.providers.story import StoryWriter
from storywink.redact import Redactor
from workflows.story_generation import StoryGeneration

STORY_WORKFLOWS: Sequence[type] = (StoryGeneration,)


def story_book_activities(
    client: Client, settings: Settings, database: Database
) -> list[Callable[..., Any]]:
    """The story's book-level activities, for the book worker."""
    book = StoryBookActivities(database.sessions, client, settings)
    return [book.claim_story, book.record_story_failure]


def build_story_worker(
    client: Client,
    settings: Settings,
    database: Database,
    fetcher: ImageFetcher,
    redactor: Redactor,
    *,
    identity: str,
    graceful_shutdown_timeout: timedelta,
    deployment_config: WorkerDeploymentConfig | None,
    writer: StoryWriter | None = None,
    meter: CallMeter | None = None,
    store: ImageStore | None = None,
) -> Worker:
    """The poller of the story task queue."""
    per_second = settings.story_rate_limit / 60 if settings.story_rate_limit else None
    activities = WriteStoryActivities(
        database.sessions,
        writer or build_story_writer(settings),
        fetcher,
        redactor,
        meter,
        store=store,
    )
    return Worker(
        client,
        task_queue=settings.temporal_story_task_queue,
        activities=[activities.write_story],
        max_concurrent_activities=settings.story_concurrency,
        # One quota for the text model, enforced by the server across every worker.
        max_task_queue_activities_per_second=per_second,
        identity=identity,
        graceful_shutdown_timeout=graceful_shutdown_timeout,
        deployment_config=deployment_config,
    )
