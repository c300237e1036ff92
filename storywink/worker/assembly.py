"""How a worker serves the pipeline: its pollers (book, page, story), what each runs."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from datetime import timedelta

from temporalio.client import Client
from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.worker import (
    CustomSlotSupplier,
    FixedSizeSlotSupplier,
    Worker,
    WorkerDeploymentConfig,
    WorkerTuner,
)

from activities.backoff import ErrorBackoff
from activities.erase_book import ErasureActivities
from activities.finalize import FinalizeActivities
from activities.fleet_check import WorkerFleet
from activities.illustrate_page import FleetFaultPolicy, IllustratePageActivities
from activities.prepare import PrepareActivities
from activities.redraw import RedrawActivities
from storywink.config import IllustratorKind, Settings, StorageKind, StoryWriterKind
from storywink.cost.budgets import BudgetLimits
from storywink.cost.meter import CallMeter, ModelChoice
from storywink.cost.prices import PriceBook
from storywink.db.connection import Database
from storywink.db.fleet import ensure_database_fleet
from storywink.providers.factory import Providers
from storywink.quota.admission import QuotaSlotSupplier
from storywink.quota.idle_poll import IdlePollTurn
from storywink.quota.limiter import SharedLimiter
from storywink.redact import Redactor
from storywink.worker.fleet_health import FleetHealth
from storywink.worker.story import STORY_WORKFLOWS, build_story_worker, story_book_activities
from workflows.book_erasure import BookErasure
from workflows.book_illustration import BookIllustration
from workflows.page_redraw import PageRedraw

STICKY_QUEUE_TIMEOUT = timedelta(seconds=3)
WORKFLOWS: tuple[type, ...] = (BookIllustration, PageRedraw, *STORY_WORKFLOWS, BookErasure)


def worker_identity(settings: Settings) -> str:
    return settings.worker_identity or f"{socket.gethostname()}:{os.getpid()}"


def _what_it_serves(settings: Settings, database: Database) -> str:
    shown = database.engine.url.render_as_string(hide_password=True)
    storage = (
        f"storage {settings.storage_dir.resolve()} (STORAGE_DIR)"
        if settings.storage_kind is StorageKind.LOCAL
        else "storage cloudinary (CLOUDINARY_URL)"
    )
    return f"database {shown} (DATABASE_URL), {storage}"


def worker_fleet(
    settings: Settings,
    database: Database,
    on_wrong_fleet: Callable[[str], None] | None = None,
) -> WorkerFleet:
    """The fleet (database and storage) this worker serves; `on_wrong_fleet` hears when a
    task prepared by another fleet reaches it."""
    with database.sessions() as session:
        fleet_id = ensure_database_fleet(session)
    return WorkerFleet(fleet_id, _what_it_serves(settings, database), on_wrong_fleet)


def deployment_config(settings: Settings) -> WorkerDeploymentConfig | None:
    """Worker versioning, when the settings name a deployment. Runs are pinned: a book
    finishes on the version it started on, and its pages go to that version's workers.
    Pinned here, not in `@workflow.defn(versioning_behavior=...)`: the SDK fails every
    workflow task of a workflow declaring one on a worker without versioning."""
    if settings.worker_deployment_name is None or settings.worker_build_id is None:
        return None
    return WorkerDeploymentConfig(
        version=WorkerDeploymentVersion(
            deployment_name=settings.worker_deployment_name, build_id=settings.worker_build_id
        ),
        use_worker_versioning=True,
        default_versioning_behavior=VersioningBehavior.PINNED,
    )


def build_page_worker(
    client: Client,
    settings: Settings,
    database: Database,
    providers: Providers,
    limiter: SharedLimiter | None,
    fleet: FleetHealth | None,
    own_fleet: WorkerFleet,
) -> Worker:
    """The poller of the page queue (built again each time page work resumes)."""
    activities = IllustratePageActivities(
        database.sessions,
        providers.illustrator,
        providers.store,
        providers.fetcher,
        Redactor(settings.secrets()),
        limiter,
        ErrorBackoff(settings.page_retry_initial_seconds, settings.page_retry_max_seconds),
        fleet,
        FleetFaultPolicy(
            retry_after=timedelta(seconds=settings.fleet_fault_retry_seconds),
            bound=timedelta(hours=settings.fleet_fault_max_hours),
        ),
        own_fleet,
        call_meter(settings, database),
    )
    return Worker(
        client,
        task_queue=settings.temporal_illustration_task_queue,
        activities=[activities.illustrate_page],
        tuner=_page_tuner(settings, limiter),
        identity=worker_identity(settings),
        graceful_shutdown_timeout=timedelta(seconds=settings.shutdown_grace_seconds),
        deployment_config=deployment_config(settings),
    )


def _page_tuner(settings: Settings, limiter: SharedLimiter | None) -> WorkerTuner:
    """The page worker's slots: with a shared quota, a page is taken only shortly before
    the quota can serve it, and an idle fleet keeps one page poll waiting
    (storywink.quota.admission), so the pages not yet served wait in the server's fair
    queue rather than in this worker's."""
    concurrency = settings.illustration_concurrency
    supplier: CustomSlotSupplier | FixedSizeSlotSupplier = FixedSizeSlotSupplier(concurrency)
    if limiter is not None:
        turn = IdlePollTurn(limiter, settings.worker_build_id)
        supplier = QuotaSlotSupplier(limiter, concurrency, idle_turn=turn)
    return WorkerTuner.create_composite(
        workflow_supplier=FixedSizeSlotSupplier(1),  # no workflows on the page queue
        activity_supplier=supplier,
        local_activity_supplier=FixedSizeSlotSupplier(1),
        nexus_supplier=FixedSizeSlotSupplier(1),
    )


def call_meter(settings: Settings, database: Database) -> CallMeter:
    """The ledger and budgets every model call of this worker goes through."""
    return CallMeter(
        database.sessions,
        ModelChoice(
            image_model=(
                settings.gemini_image_model
                if settings.illustrator_kind is IllustratorKind.GEMINI
                else "local"
            ),
            image_size=settings.gemini_image_size,
            text_model=(
                settings.gemini_text_model
                if settings.story_writer_kind is StoryWriterKind.GEMINI
                else "offline"
            ),
        ),
        PriceBook(settings.model_prices),
        BudgetLimits(settings.book_budget_usd, settings.user_daily_budget_usd),
    )


def shared_limiter(settings: Settings, database: Database) -> SharedLimiter | None:
    if not settings.illustration_rate_limit:
        return None
    return SharedLimiter(database.sessions, settings.illustration_rate_limit)


def build_workers(
    client: Client,
    settings: Settings,
    database: Database,
    providers: Providers,
    *,
    book_workflow: type[BookIllustration] = BookIllustration,
    fleet: FleetHealth | None = None,
    own_fleet: WorkerFleet | None = None,
    on_wrong_fleet: Callable[[str], None] | None = None,
) -> list[Worker]:
    """The pollers: workflows + book activities, the page activities, the story activity.
    `book_workflow` lets a test run a changed workflow as another version; `fleet` is told
    of a fleet fault a page meets (the worker process pauses its page work on it);
    `own_fleet` the database and storage this worker serves (else `worker_fleet`'s, whose
    `on_wrong_fleet` hears when a page prepared by another fleet reaches this worker)."""
    identity = worker_identity(settings)
    own_fleet = own_fleet or worker_fleet(settings, database, on_wrong_fleet)
    versioning = deployment_config(settings)
    redactor = Redactor(settings.secrets())
    limiter = shared_limiter(settings, database)
    grace = timedelta(seconds=settings.shutdown_grace_seconds)
    finalize = FinalizeActivities(database.sessions, client, own_fleet)
    erasure = ErasureActivities(database.sessions, client, providers.store)
    book_worker = Worker(
        client,
        task_queue=settings.temporal_task_queue,
        workflows=[book_workflow, PageRedraw, *STORY_WORKFLOWS, BookErasure],
        activities=[
            PrepareActivities(database.sessions, client, settings, own_fleet).prepare_illustration,
            RedrawActivities(database.sessions, client, settings, own_fleet).claim_redraw,
            finalize.finalize_book,
            finalize.record_page_failure,
            *story_book_activities(client, settings, database),
            erasure.stop_book_runs,
            erasure.claim_erasure,
            erasure.erase_assets,
            erasure.erase_rows,
        ],
        max_concurrent_activities=settings.finalize_concurrency,
        identity=identity,
        graceful_shutdown_timeout=grace,
        # A run whose worker died waits this long before another worker takes its next
        # workflow task (default 10 s). Replaying our short histories elsewhere is cheap.
        sticky_queue_schedule_to_start_timeout=STICKY_QUEUE_TIMEOUT,
        deployment_config=versioning,
    )
    page_worker = build_page_worker(
        client, settings, database, providers, limiter, fleet, own_fleet
    )
    story_worker = build_story_worker(
        client,
        settings,
        database,
        providers.fetcher,
        redactor,
        identity=identity,
        graceful_shutdown_timeout=grace,
        deployment_config=versioning,
        meter=call_meter(settings, database),
        store=providers.store,
    )
    return [book_worker, page_worker, story_worker]
