"""Illustrate one page: fetch photo and style, generate, upload, record.

Outcomes (docs/behaviour.md): OK; FLAGGED when the model refuses for a content reason; FAILED on a
permanent error. Transient errors are raised for Temporal to retry, and when retries run
out the workflow records the page FAILED.

Never paying twice: a retry looks for what an earlier attempt of this run already has, in
the cheapest place first: the stored image's URL in the last heartbeat's details; the
asset under the page's deterministic public id (when the worker died before that
heartbeat got out); the generated image kept in the database as a draft (when the upload
failed). Only when none exists is the model called.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from logging import INFO, WARNING
from typing import TypeVar

from pydantic import BaseModel
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.backoff import ErrorBackoff, with_delay
from activities.failures import FLEET_FAULT, stage_failure
from activities.fleet_check import WorkerFleet
from activities.heartbeat import Heartbeat, heartbeating
from storywink import contract
from storywink.contract import ModerationStatus, PageResult, PageTask
from storywink.cost.meter import CallMeter, UnclosedCall
from storywink.db.engine import in_session
from storywink.illustration import metrics
from storywink.illustration import records as books
from storywink.illustration.prompt import build_prompt
from storywink.images import NotAnImage, normalise_photo
from storywink.pictures import asset_ref, url_to_fetch
from storywink.providers.base import (
    ContentRefused,
    FleetFault,
    GeneratedImage,
    IllustrationJob,
    Illustrator,
    ImageStore,
    PermanentError,
    RateLimited,
    SourceImage,
    StoredImage,
)
from storywink.providers.fetch import ImageFetcher, redact_url
from storywink.quota.limiter import SharedLimiter
from storywink.redact import Redactor
from storywink.worker.fleet_health import FleetHealth

T = TypeVar("T")
STYLE_REFERENCES_KEPT = 32  # a few styles x (page, title page), across style releases


class Stage(StrEnum):
    FETCH_PHOTO = "fetch photo"
    FETCH_STYLE = "fetch style"
    GENERATE = "generate"
    UPLOAD = "upload"
    RECORD = "record"


class _PageSettled(Exception):
    """A final outcome reached mid-way (refusal or permanent error): record it, stop."""

    def __init__(self, status: ModerationStatus, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class FleetFaultPolicy:
    """What a page does on a fleet fault: tried again after `retry_after`, and settled
    FAILED with the fault's reason only once it was first scheduled `bound` ago."""

    retry_after: timedelta = timedelta(seconds=60)
    bound: timedelta = timedelta(hours=12)


class IllustratePageActivities:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        illustrator: Illustrator,
        store: ImageStore,
        fetcher: ImageFetcher,
        redactor: Redactor,
        limiter: SharedLimiter | None = None,
        backoff: ErrorBackoff | None = None,
        fleet: FleetHealth | None = None,
        fleet_policy: FleetFaultPolicy | None = None,
        own_fleet: WorkerFleet | None = None,
        meter: CallMeter | None = None,
    ) -> None:
        self._meter = meter or CallMeter(sessions)
        self._fleet = fleet
        self._fleet_policy = fleet_policy or FleetFaultPolicy()
        self._own_fleet = own_fleet
        self._limiter = limiter
        self._backoff = backoff
        self._sessions = sessions
        self._illustrator = illustrator
        self._store = store
        self._fetcher = fetcher
        self._redact = redactor
        self._style_references: dict[tuple[str, str], SourceImage] = {}

    @activity.defn
    async def illustrate_page(self, task: PageTask) -> PageResult:
        if self._own_fleet is not None:
            self._own_fleet.check_task(task)
        started = time.monotonic()
        if activity.info().attempt > 1:
            metrics.page_retry()
        attempt = _Attempt()
        async with heartbeating() as heartbeat:
            previous = heartbeat.earlier(PageCheckpoint)
            if previous is not None:
                attempt.uncounted_calls = previous.uncounted_calls
                attempt.unclosed_calls = list(previous.unclosed_calls)
            work = asyncio.create_task(self._settle(task, heartbeat, attempt))
            result = await self._unless_stopped(task, work, attempt)
        metrics.page_settled(result.moderation_status, time.monotonic() - started)
        return result

    async def _settle(self, task: PageTask, heartbeat: Heartbeat, attempt: _Attempt) -> PageResult:
        try:
            return await self._illustrate(task, heartbeat, attempt)
        except _PageSettled as settled:
            _log_for(task, "%s: %s", settled.status.value, settled.reason, level=WARNING)
            return await self._record(task, attempt, settled.status, reason=settled.reason)

    async def _unless_stopped(
        self, task: PageTask, work: asyncio.Task[PageResult], attempt: _Attempt
    ) -> PageResult:
        """The attempt's result. A pause lets the attempt finish (its model call is paid
        for; the pause holds the attempts after it, as Temporal documents). A cancelled
        run stops it and records at which stage; a dead run or a shutdown just stops it."""
        while True:
            try:
                return await asyncio.shield(work)
            except asyncio.CancelledError:
                if work.done():  # finished as the cancel came: its outcome is recorded
                    _uncancel()
                    return work.result()
                details = activity.cancellation_details()
                if details is not None and details.paused:
                    _uncancel()
                    _log_for(task, "paused during %s: finishing this attempt", attempt.stage)
                    continue
                work.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await work
                if details is not None and details.cancel_requested:
                    await self._record_cancelled(task, attempt)
                raise

    async def _record_cancelled(self, task: PageTask, attempt: _Attempt) -> None:
        """Keep an image the attempt already stored; otherwise say where it was stopped."""
        try:
            if attempt.stored is not None:
                picture = asset_ref(attempt.stored)
                await self._record(task, attempt, ModerationStatus.OK, image_ref=picture)
            else:
                reason = books.cancelled_reason(f"during {attempt.stage}")
                await self._record(task, attempt, ModerationStatus.FAILED, reason=reason)
        except Exception as exc:  # finalize still settles the page
            _log_for(task, "cancelled; not recorded (%s)", type(exc).__name__, level=WARNING)

    async def _illustrate(
        self, task: PageTask, heartbeat: Heartbeat, attempt: _Attempt
    ) -> PageResult:
        attempt.stage = Stage.RECORD
        done = await self._in_stage(
            Stage.RECORD,
            in_session(
                self._sessions,
                books.settled_result,
                task.page_id,
                task.run_id,
                task.redraw,
            ),
        )
        if done is not None:
            return done
        stored = await self._stored_earlier(task, heartbeat, attempt)
        if stored is None:
            image = await self._draft_or_new_image(task, attempt, heartbeat)
            attempt.stage = Stage.UPLOAD
            stored = await self._in_stage(
                Stage.UPLOAD,
                self._store.store(
                    image,
                    _public_id(task),
                    tags=[f"book_{task.book_id}", f"page_{task.page_number}", task.style.key],
                    context={
                        "run_id": task.run_id,
                        "style": task.style.key,
                        "style_hash": task.style.content_hash,
                    },
                ),
            )
            heartbeat.checkpoint(attempt.checkpoint(Stage.UPLOAD, stored))
        attempt.stored = stored
        attempt.stage = Stage.RECORD
        return await self._record(task, attempt, ModerationStatus.OK, image_ref=asset_ref(stored))

    async def _stored_earlier(
        self, task: PageTask, heartbeat: Heartbeat, attempt: _Attempt
    ) -> StoredImage | None:
        """The image an earlier attempt of this run (or the run it took over from) already
        stored for this page in this style, if any."""
        if not _may_have_earlier_work(task):
            return None
        public_id = _public_id(task)
        previous = heartbeat.earlier(PageCheckpoint)
        if previous is not None and previous.asset_id:
            _log_for(task, "reusing the image an earlier attempt stored")
            return StoredImage(url="", public_id=previous.asset_id)
        if previous is not None and previous.image_url:  # an older worker's public upload
            _log_for(task, "reusing the image an earlier attempt stored")
            return StoredImage(url=previous.image_url, public_id=public_id, private=False)
        stored = await self._in_stage(Stage.UPLOAD, self._store.find(public_id))
        if stored is None and task.asset_salt is None:  # prepared before private images
            stored = await self._in_stage(Stage.UPLOAD, self._store.find(public_id, private=False))
        if stored is None or not _drawn_for(task, stored.context):
            return None
        _log_for(task, "reusing the image found under %s", public_id)
        heartbeat.checkpoint(attempt.checkpoint(Stage.UPLOAD, stored))
        return stored

    async def _draft_or_new_image(
        self, task: PageTask, attempt: _Attempt, heartbeat: Heartbeat
    ) -> GeneratedImage:
        """The image an earlier attempt generated but could not store, else a new one."""
        if _may_have_earlier_work(task):
            draft = await self._in_stage(
                Stage.UPLOAD,
                in_session(self._sessions, books.load_draft, task.page_id, _run_ids(task)),
            )
            if draft is not None:
                _log_for(task, "reusing the image an earlier attempt generated")
                return GeneratedImage(data=draft[0], mime_type=draft[1])
        image = await self._generate(task, attempt, heartbeat)
        try:
            await in_session(
                self._sessions,
                books.save_draft,
                task.page_id,
                task.run_id,
                image.data,
                image.mime_type,
            )
        except Exception as exc:  # the checkpoint is an optimisation: go on and upload
            message = "could not keep the generated image as a draft (%s)"
            _log_for(task, message, type(exc).__name__, level=WARNING)
        return image

    async def _generate(
        self, task: PageTask, attempt: _Attempt, heartbeat: Heartbeat
    ) -> GeneratedImage:
        attempt.stage = Stage.FETCH_PHOTO
        photo_ref = task.original_asset_id or task.original_image_url
        if not photo_ref:
            raise _PageSettled(ModerationStatus.FAILED, f"{Stage.FETCH_PHOTO}: page has no photo")
        photo = await self._in_stage(
            Stage.FETCH_PHOTO, _fetch_photo(self._fetcher, url_to_fetch(self._store, photo_ref))
        )
        reference: SourceImage | None = None
        if self._illustrator.uses_style_reference:
            attempt.stage = Stage.FETCH_STYLE
            reference = await self._in_stage(Stage.FETCH_STYLE, self._style_reference(task))
        job = IllustrationJob(
            prompt=build_prompt(
                style=task.style,
                is_title_page=task.is_title_page,
                book_title=task.book_title,
                text=task.text,
                illustration_notes=task.illustration_notes,
                change_request=task.redraw.change_request if task.redraw else None,
            ),
            photo=photo,
            style_reference=reference,
            style_key=task.style.key,
            text=task.text,
            title=task.book_title,
            is_title_page=task.is_title_page,
        )
        attempt.stage = Stage.GENERATE
        return await self._in_stage(Stage.GENERATE, self._call_model(task, job, attempt, heartbeat))

    async def _style_reference(self, task: PageTask) -> SourceImage:
        """The style's reference image, fetched once per worker: a style's references are
        published under a folder named by their content (`storywink styles publish`), so
        a URL of a style snapshot (with its content hash) always holds the same image."""
        url = task.style.reference_for(task.is_title_page)
        key = (url, task.style.content_hash)
        if (cached := self._style_references.get(key)) is not None:
            return cached
        reference = await self._fetcher.fetch(url, "style reference")
        if len(self._style_references) >= STYLE_REFERENCES_KEPT:
            self._style_references.pop(next(iter(self._style_references)))
        self._style_references[key] = reference
        return reference

    async def _call_model(
        self, task: PageTask, job: IllustrationJob, attempt: _Attempt, heartbeat: Heartbeat
    ) -> GeneratedImage:
        """One model call, in a slot of the fleet's shared rate when one is set; a 429
        slows the whole fleet down (storywink.quota.slots). The call's ledger row (which
        counts it on the page) and its budget reservation are written first: with the
        database away the call is not made (no budget could be kept), and a budget that
        cannot take it ends the page FAILED (`generate: budget: …`), not retried."""

        def carry(ending: UnclosedCall) -> None:
            attempt.unclosed_calls.append(ending)
            heartbeat.checkpoint(attempt.checkpoint(Stage.GENERATE))

        return await self._meter.image_call(
            book_id=task.book_id,
            page_id=task.page_id,
            run_id=task.run_id,
            call=lambda: self._call_in_slot(job),
            unclosed=carry,
        )

    async def _call_in_slot(self, job: IllustrationJob) -> GeneratedImage:
        # The worker's next slot goes to its best waiting page, by the page's Priority
        # (storywink.quota.queue). Nothing between the slot and the call: the limiter's
        # headroom is for jitter only.
        priority = activity.info().priority
        slot = (
            await self._limiter.acquire(priority.priority_key, priority.fairness_key)
            if self._limiter is not None
            else None
        )
        try:
            return await metrics.timed_model_call(self._illustrator.illustrate(job))
        except RateLimited as exc:
            if self._limiter is not None and slot is not None:
                await self._limiter.rejected(slot, exc.retry_after)
            raise

    async def _record(
        self,
        task: PageTask,
        attempt: _Attempt,
        status: ModerationStatus,
        *,
        image_ref: str | None = None,
        reason: str | None = None,
    ) -> PageResult:
        for ending in attempt.unclosed_calls:  # calls that ended while the database was away
            await self._in_stage(Stage.RECORD, ending.close(self._sessions))
        return await self._in_stage(
            Stage.RECORD,
            in_session(
                self._sessions,
                books.record_page,
                task.page_id,
                task.run_id,
                status,
                image_ref=image_ref,
                reason=reason,
                uncounted_calls=attempt.uncounted_calls,
                redraw=task.redraw,
            ),
        )

    async def _in_stage(self, stage: Stage, work: Awaitable[T]) -> T:
        """Await `work`, turning provider errors into outcomes or retryable failures; those
        are retried after the error backoff (activities.backoff)."""
        try:
            return await self._unbacked(stage, work)
        except ApplicationError as error:
            delay = self._backoff.after_this_attempt() if self._backoff else None
            raise with_delay(error, delay) from None

    async def _unbacked(self, stage: Stage, work: Awaitable[T]) -> T:
        try:
            return await work
        except ContentRefused as exc:
            raise _PageSettled(
                ModerationStatus.FLAGGED, f"{stage}: {self._redact(exc.reason)}"
            ) from None
        except FleetFault as exc:
            raise self._fleet_fault(stage, exc) from None
        except PermanentError as exc:
            raise _PageSettled(
                ModerationStatus.FAILED, f"{stage}: {self._redact(exc.reason)}"
            ) from None
        except (_PageSettled, ApplicationError):
            raise
        except Exception as exc:
            raise stage_failure(stage, exc, contract.PAGE_STAGE_ERROR, self._redact) from None

    def _fleet_fault(self, stage: Stage, fault: FleetFault) -> Exception:
        """Not this page's fault: report it (the worker pauses its page work) and have the
        page tried again later, its attempt otherwise unspent; settle it FAILED with the
        fault only once the page has waited its bound."""
        reason = f"{stage}: {self._redact(fault.reason)}"
        waited = datetime.now(UTC) - activity.info().scheduled_time
        if waited >= self._fleet_policy.bound:
            return _PageSettled(ModerationStatus.FAILED, reason)
        if self._fleet is not None:
            self._fleet.report(fault.setting, self._redact(fault.reason))
        activity.logger.warning("%s: %s refused; the page waits for it", reason, fault.setting)
        return ApplicationError(
            f"{reason} (fleet fault: {fault.setting})",
            type=FLEET_FAULT,
            next_retry_delay=self._fleet_policy.retry_after,
        )


async def _fetch_photo(fetcher: ImageFetcher, url: str) -> SourceImage:
    """The page's photo, normalised as at `book create` (a photo from elsewhere, e.g. a
    web backend, gets the same checks); one decode at a time per worker (storywink.images),
    and one per photo: normalising it is what checks it."""
    fetched = await fetcher.fetch_unchecked(url, "photo")
    try:
        photo = await asyncio.to_thread(normalise_photo, fetched)
    except NotAnImage as exc:
        raise PermanentError(f"photo {redact_url(url)}: {exc}") from None
    return SourceImage(data=photo.data, mime_type=photo.mime_type)


class _Attempt:
    """How far this attempt got: its stage, and the image once stored."""

    def __init__(self) -> None:
        self.stage = Stage.RECORD
        self.stored: StoredImage | None = None
        # Model calls of this run for this page that the database has not counted yet:
        # carried from the heartbeat details of a worker before the ledger (each call is
        # now counted by its ledger row, written before the call).
        self.uncounted_calls = 0
        # Endings of this page's calls the ledger could not take yet (storywink.cost.meter).
        self.unclosed_calls: list[UnclosedCall] = []

    def checkpoint(self, stage: Stage, stored: StoredImage | None = None) -> PageCheckpoint:
        private = stored is not None and stored.private
        return PageCheckpoint(
            stage=stage,
            image_url=stored.url if stored is not None and not private else None,
            asset_id=stored.public_id if stored is not None and private else None,
            uncounted_calls=self.uncounted_calls,
            unclosed_calls=self.unclosed_calls,
        )


def _may_have_earlier_work(task: PageTask) -> bool:
    """A retry; a run that took over a terminated one's claim; or a run that was reset
    (its chain's claim, `task.run_id`, names an earlier run of the workflow)."""
    info = activity.info()
    return (
        info.attempt > 1 or task.earlier_run_id is not None or info.workflow_run_id != task.run_id
    )


def _public_id(task: PageTask) -> str:
    """Where this version of the page's picture is stored (a redraw's has its own id)."""
    version = task.redraw.version if task.redraw else 0
    return contract.page_public_id(task.book_id, task.page_number, version, task.asset_salt)


def _run_ids(task: PageTask) -> tuple[str, ...]:
    """The runs whose unrecorded work for this page this attempt may reuse."""
    return (task.run_id, task.earlier_run_id) if task.earlier_run_id else (task.run_id,)


def _drawn_for(task: PageTask, context: Mapping[str, str]) -> bool:
    """Whether a stored image was drawn by one of our runs, in this run's style."""
    same_style = context.get("style_hash", task.style.content_hash) == task.style.content_hash
    return context.get("run_id") in _run_ids(task) and same_style


def _uncancel() -> None:
    current = asyncio.current_task()
    if current is not None:
        current.uncancel()


def _log_for(task: PageTask, message: str, *args: object, level: int = INFO) -> None:
    activity.logger.log(
        level,
        f"page %d of book %s: {message}",
        task.page_number,
        task.book_id,
        *args,
        extra={"book_id": task.book_id, "page_number": task.page_number},
    )


class PageCheckpoint(BaseModel):
    """Heartbeat details: how far this attempt got. No secrets, no image bytes."""

    stage: Stage
    image_url: str | None = None  # a public asset's URL (a worker before private images)
    asset_id: str | None = None  # a private asset: its id, never a signed URL
    uncounted_calls: int = 0  # model calls to add to the page's count when it is recorded
    unclosed_calls: list[UnclosedCall] = []  # call endings to write to the ledger
