"""A worker process: `python worker.py` or `storywink-worker`.

Start-up checks settings, the style library, the database and Temporal before polling,
so a worker that cannot do the work never takes any: it logs one line saying what is wrong
and exits 2. It registers the pipeline's search attributes where the namespace lacks them
(or refuses to start, saying how to add them). SIGTERM/SIGINT stop polling and give
in-flight pages `SHUTDOWN_GRACE_SECONDS` to finish; what doesn't finish is handed back to
Temporal and retried on another worker. The process is gone at most `SHUTDOWN_GRACE_SECONDS`
+ 4 s after the signal, even if Temporal's pollers have not drained. With HEALTH_PORT set,
`/readyz` is 200 only while polling; with METRICS_PORT set, `/metrics` serves the SDK's
metrics and ours. With WORKER_DEPLOYMENT_NAME and WORKER_BUILD_ID set, both pollers join
that Worker Deployment as that version (docs/deploying.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from typing import NoReturn, Protocol

from temporalio.client import Client
from temporalio.common import MetricMeter
from temporalio.worker import Worker

from activities.fleet_check import WorkerFleet
from storywink.config import (
    ConfigurationError,
    IllustratorKind,
    Settings,
    StorageKind,
    load_settings,
)
from storywink.db.connection import Database, open_database
from storywink.db.engine import DatabaseNotReady
from storywink.db.fleet import FleetError, establish_fleet
from storywink.health import Readiness, State, serve_health
from storywink.illustration.style_assets import missing_references
from storywink.illustration.styles import StyleLibraryError, validate_library
from storywink.logs import configure_logging
from storywink.providers.factory import Providers, build_providers, build_store, gemini_client
from storywink.providers.fetch import ImageFetcher
from storywink.providers.gemini_check import check_models, configured_models
from storywink.telemetry import worker_runtime
from storywink.temporal.connection import (
    TemporalUnavailable,
    connect_temporal,
    ensure_search_attributes,
)
from storywink.temporal.upgrade import move_stranded_runs, runs_without_book_id
from storywink.worker.assembly import (
    WORKFLOWS,
    build_page_worker,
    build_workers,
    shared_limiter,
    worker_fleet,
    worker_identity,
)
from storywink.worker.fleet_health import FleetHealth
from storywink.worker.page_work import PausablePageWorker

log = logging.getLogger("storywink.worker")
SHUTDOWN_TIMESTAMP = "storywink_model_shutdown_timestamp_seconds"
# After the grace period the SDK cancels the pages still running; this long more for them to
# answer the cancel and for the pollers to stop, then we stop waiting for them.
POLLERS_STOP_SECONDS = 2.0
# And this long more for the clean-up after that; then the process ends regardless.
CLEANUP_SECONDS = 2.0
# The most the start waits for moving an earlier release's stranded runs before it polls.
UPGRADE_SECONDS = 30.0


@asynccontextmanager
async def started_runtime(
    settings: Settings,
) -> AsyncIterator[tuple[Client, Database, Providers]]:
    """Everything a worker needs, checked in order; each failure names what is wrong."""
    library_hash = validate_library(settings.style_assets_url)
    log.info("style library ok (hash %s)", library_hash)
    # In a thread: a slow database must not stall the event loop serving /healthz.
    database = await asyncio.to_thread(open_database, settings, create=True)
    shown = database.engine.url.render_as_string(hide_password=True)
    log.info("database ok (%s)", shown)
    try:
        fleet_id = await asyncio.to_thread(
            establish_fleet, database.sessions, build_store(settings), shown
        )
    except BaseException:
        database.engine.dispose()
        raise
    log.info("fleet %s (database and storage agree)", fleet_id)
    runtime = worker_runtime(settings, worker_identity(settings))
    if settings.metrics_port is not None:
        log.info("metrics on http://%s:%d/metrics", settings.ops_host, settings.metrics_port)
    await check_gemini_models(settings, runtime.metric_meter)
    client = await connect_temporal(settings, runtime)
    log.info(
        "temporal ok (%s, namespace %s)", settings.temporal_address, settings.temporal_namespace
    )
    if added := await ensure_search_attributes(client, settings.temporal_namespace):
        log.info("registered search attributes %s", ", ".join(added))
    providers = build_providers(settings)
    try:
        log.info("illustrator %s, storage %s", providers.illustrator.name, providers.store.name)
        if providers.illustrator.uses_style_reference:
            await check_style_references(providers.fetcher, settings.style_assets_url)
        warn_if_photos_leave_the_host(settings)
        yield client, database, providers
    finally:
        await providers.aclose()
        database.engine.dispose()


async def check_gemini_models(settings: Settings, meter: MetricMeter) -> None:
    """Ask the API about the configured models (`models.get`: no generation, no cost): a
    model it does not know, one shut down, or a refused key stops the start; a model near
    its shutdown or an API unreachable right now only warns (README "First run")."""
    models = configured_models(settings)
    if not models:
        return
    client = gemini_client(settings)
    try:
        check = await check_models(client, models, date.today(), settings.secrets())
    finally:
        await client.aio.aclose()
    for warning in check.warnings:
        log.warning("%s", warning)
    # The date, not the days left: the alert counts down even if the worker runs for weeks.
    gauge = meter.create_gauge(
        SHUTDOWN_TIMESTAMP, "Google's announced shutdown of a configured model (Unix time)."
    )
    for (setting, model), shutdown in check.shutdowns.items():
        at = datetime.combine(shutdown, datetime.min.time(), UTC)
        gauge.set(int(at.timestamp()), {"setting": setting, "model": model})
    log.info("models ok (%s)", ", ".join(f"{m.setting}={m.name}" for m in models))


async def check_style_references(fetcher: ImageFetcher, assets_url: str) -> None:
    """A model that is sent the styles' reference images needs every one of them: refuse to
    start when one is missing for good; only warn when they cannot be reached right now."""
    missing, unreachable = await missing_references(fetcher, assets_url)
    if missing:
        raise StyleLibraryError(
            f"style reference images missing under STYLE_ASSETS_URL ({assets_url}): "
            + "; ".join(missing)
            + ". Publish the shipped ones with `storywink styles publish` and set the "
            "STYLE_ASSETS_URL it prints"
        )
    if unreachable:
        log.warning("style reference images unreachable for now: %s", "; ".join(unreachable))


def warn_if_photos_leave_the_host(settings: Settings) -> None:
    if (
        settings.illustrator_kind is IllustratorKind.GEMINI
        and settings.storage_kind is StorageKind.LOCAL
    ):
        log.warning(
            "a real image model with local storage: photos under STORAGE_DIR (%s) are sent "
            "to the model and pictures stay on this host; set CLOUDINARY_URL for the CDN",
            settings.storage_dir.resolve(),
        )


async def move_runs_of_earlier_releases(client: Client, task_queue: str) -> None:
    """Runs an earlier release started that this code cannot replay go on from their first
    workflow task (storywink/temporal/upgrade.py). A failure here only delays those runs:
    it never stops the worker, and `storywink runs upgrade` does the same on demand."""
    try:
        async with asyncio.timeout(UPGRADE_SECONDS):
            await move_stranded_runs(client, WORKFLOWS, runs_without_book_id(task_queue))
    except Exception as exc:  # anything: the worker must start regardless
        log.warning(
            "runs of earlier releases not checked (%s): run `storywink runs upgrade`",
            str(exc) or type(exc).__name__,
        )


async def keep_moving_runs_of_earlier_releases(
    client: Client, task_queue: str, every: float
) -> None:
    """Again every `every` seconds while the worker runs: a run the start's check missed
    (the server's list not yet up to date, or an old worker still finishing its first
    workflow task during a rolling deploy) is not stranded for longer."""
    while True:
        await asyncio.sleep(every)
        await move_runs_of_earlier_releases(client, task_queue)


class Poller(Protocol):
    """A Temporal `Worker`, or the page worker that pauses on a fleet fault."""

    @property
    def is_running(self) -> bool: ...

    async def run(self) -> None: ...

    async def shutdown(self) -> None: ...


def pausable_pages(
    first: Worker,
    client: Client,
    settings: Settings,
    database: Database,
    providers: Providers,
    fleet: FleetHealth,
    own_fleet: WorkerFleet,
    readiness: Readiness,
) -> PausablePageWorker:
    """The page worker, paused while a fleet fault lasts; probed through the provider
    that refused (the CDN for CLOUDINARY_URL, else the image model)."""
    probes: dict[str, Callable[[], Awaitable[bool]]] = {}
    store_probe = getattr(providers.store, "probe", None)
    if store_probe is not None:
        probes["CLOUDINARY_URL"] = store_probe
    illustrator_probe = getattr(providers.illustrator, "probe", None)
    runtime_meter = client.service_client.config.runtime
    meter = runtime_meter.metric_meter if runtime_meter is not None else MetricMeter.noop
    return PausablePageWorker(
        first,
        # A fresh limiter too: the shut-down worker's is not used again.
        lambda: build_page_worker(
            client,
            settings,
            database,
            providers,
            shared_limiter(settings, database),
            fleet,
            own_fleet,
        ),
        fleet,
        probes,
        illustrator_probe or _always_ok,
        readiness,
        meter,
        probe_seconds=settings.fleet_fault_probe_seconds,
        max_pause_seconds=settings.fleet_fault_max_hours * 3600,
    )


async def _always_ok() -> bool:
    return True


async def until_polling(workers: list[Poller], runs: list[asyncio.Task[None]]) -> bool:
    """True once every worker polls, False if one stopped first. `Worker.run` checks the
    namespace before polling; `is_running` turns true after that."""
    while not all(worker.is_running for worker in workers):
        if any(run.done() for run in runs):
            return False
        await asyncio.sleep(0.05)
    return True


async def stop_workers(workers: list[Poller], within: float) -> bool:
    """Shut the workers down (in-flight pages get the grace period, then are cancelled) but
    wait at most `within` seconds: going without pollers that have not drained, or a page
    that ignores its cancel, loses nothing, because Temporal hands every unfinished page to
    another worker once its heartbeat (or start-to-close) timeout passes, and a workflow
    task through the sticky queue timeout."""
    shutdown = asyncio.gather(*(worker.shutdown() for worker in workers))
    try:
        await asyncio.wait_for(shutdown, timeout=within)
    except TimeoutError:
        log.warning(
            "workers not stopped %.0fs after the stop signal; exiting without them, "
            "Temporal retries their unfinished work elsewhere after its timeouts",
            within,
        )
        return False
    return True


async def run_worker(settings: Settings, stop: asyncio.Event) -> None:
    readiness = Readiness()
    async with (
        serve_health(settings.ops_host, settings.health_port, readiness),
        started_runtime(settings) as (client, database, providers),
    ):
        disagreements: list[str] = []

        def on_wrong_fleet(message: str) -> None:
            if not disagreements:  # one line, and no more pages taken from other fleets
                disagreements.append(message)
                log.error("stopping: %s", message)
                stop.set()

        # Before polling, so that no page of a run about to be moved is taken.
        await move_runs_of_earlier_releases(client, settings.temporal_task_queue)
        upgrades = asyncio.create_task(
            keep_moving_runs_of_earlier_releases(
                client, settings.temporal_task_queue, settings.upgrade_check_seconds
            )
        )
        fleet = FleetHealth()
        own_fleet = worker_fleet(settings, database, on_wrong_fleet)
        book, pages, story = build_workers(
            client, settings, database, providers, fleet=fleet, own_fleet=own_fleet
        )
        workers: list[Poller] = [
            book,
            pausable_pages(
                pages, client, settings, database, providers, fleet, own_fleet, readiness
            ),
            story,
        ]
        runs = [asyncio.create_task(worker.run()) for worker in workers]
        if await until_polling(workers, runs):
            readiness.state = State.READY
            log.info(
                "worker %s polling %s, %s and %s%s",
                worker_identity(settings),
                settings.temporal_task_queue,
                settings.temporal_illustration_task_queue,
                settings.temporal_story_task_queue,
                f" as version {settings.worker_deployment_name}:{settings.worker_build_id}"
                if settings.worker_deployment_name
                else "",
            )
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait([*runs, stopping], return_when=asyncio.FIRST_COMPLETED)
        readiness.state = State.STOPPING
        log.info(
            "stopping: no new work; in-flight work gets %.0fs", settings.shutdown_grace_seconds
        )
        if await stop_workers(workers, settings.shutdown_grace_seconds + POLLERS_STOP_SECONDS):
            log.info("stopped")
        stopping.cancel()
        upgrades.cancel()
        for run in runs:
            if run.done() and (error := run.exception()) is not None:
                raise error
        if disagreements:
            raise FleetError(disagreements[0])


def main() -> int:
    try:
        settings = load_settings()
    except ConfigurationError as exc:
        print(f"storywink worker: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings, worker_identity(settings))
    stop = asyncio.Event()

    def on_signal() -> None:
        if not stop.is_set():
            stop.set()
            exit_after(settings.shutdown_grace_seconds + POLLERS_STOP_SECONDS + CLEANUP_SECONDS)

    async def amain() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)
        await run_worker(settings, stop)

    try:
        asyncio.run(amain())
    except (StyleLibraryError, DatabaseNotReady, TemporalUnavailable, ConfigurationError) as exc:
        log.error("worker not started: %s", exc)
        return 2
    except FleetError as exc:
        log.error("worker %s: %s", "stopped" if stop.is_set() else "not started", exc)
        return 2
    return 0


def exit_after(seconds: float) -> None:
    """Backstop: end the process `seconds` from now if it is still running (a clean-up step
    or the event loop's own teardown that hangs). A daemon thread, so it never delays exit."""

    def exit_now() -> None:
        log.warning("still running %.0fs after the stop signal: exiting now", seconds)
        exit_process(0)

    timer = threading.Timer(seconds, exit_now)
    timer.daemon = True
    timer.start()


def exit_process(code: int) -> NoReturn:
    """Flush the logs and end the process without the interpreter's finalization.

    Finalization can deadlock in the Temporal SDK: its garbage collection drops the SDK
    core's runtime, whose Tokio shutdown waits for its threads while holding the GIL, and
    the thread forwarding core logs to Python logging (LogForwardingConfig) blocks forever
    taking the GIL once finalization has begun (CPython/PyO3 park such threads). The worker
    then never exits (found with gdb; see tests/worker/test_replicas.py). Everything the worker owns
    was shut down before this, and the SDK offers no call to close its runtime."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # closed or broken: nothing to do
            stream.flush()
    os._exit(code)


def run() -> NoReturn:
    """The console script and `python worker.py`."""
    try:
        code = main()
    except Exception:
        log.exception("worker failed")
        code = 1
    exit_process(code)
