"""The page activity in `ActivityEnvironment`: what a retry reuses and what a page ends as.

A retry must not pay for an image twice. It reuses, cheapest first, the URL in its last
heartbeat, the asset stored under the page's deterministic id (drawn by one of our runs in
this style), the draft kept in the database; only when none exists is the model called.
The real activity and a real SQLite database; in-process providers that count what was
paid for (tests/support/page_fakes.py). No Temporal server: the process tests prove the wiring.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy.orm import Session, sessionmaker
from temporalio.activity import ActivityCancellationDetails
from temporalio.common import Priority
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.illustrate_page import IllustratePageActivities
from activities.prepare import page_task
from storywink import contract
from storywink.book import records as book_records
from storywink.contract import ModerationStatus, PageResult, PageTask
from storywink.db.engine import make_engine, make_session_factory, upgrade_to_head
from storywink.db.models import Book, Page, PageDraft
from storywink.illustration import records as books
from storywink.illustration.styles import resolve_style
from storywink.providers.base import ContentRefused, PermanentError, TransientError
from storywink.quota import slots as quota
from storywink.quota.limiter import SharedLimiter
from storywink.redact import Redactor
from tests.support.builders import new_book
from tests.support.page_fakes import CountingFetcher, CountingIllustrator, MemoryStore

SECRET = "sk-page-test-0123456789-secret"
STYLE = resolve_style("vignette", "https://assets.test/styles/")
CANCELLED = "cancelled: the illustration run was cancelled"


@pytest.fixture(scope="module")
def sessions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('db') / 'pages.sqlite'}")
    upgrade_to_head(engine)
    yield make_session_factory(engine)
    engine.dispose()


def _new_run() -> str:
    return str(uuid.uuid4())


@dataclass
class Bench:
    """Page 2 of a fresh book claimed by `task.run_id`, and the providers its attempts use."""

    sessions: sessionmaker[Session]
    fetcher: CountingFetcher
    task: PageTask
    illustrator: CountingIllustrator = field(default_factory=CountingIllustrator)
    store: MemoryStore = field(default_factory=MemoryStore)
    heartbeats: list[tuple[object, ...]] = field(default_factory=list)

    @property
    def public_id(self) -> str:
        task = self.task
        return contract.page_public_id(task.book_id, task.page_number, 0, task.asset_salt)

    def environment(
        self,
        *,
        attempt: int = 1,
        workflow_run_id: str | None = None,
        details: Sequence[object] = (),
    ) -> ActivityEnvironment:
        """An attempt of the page activity; by default the first of the run holding the claim."""
        env = ActivityEnvironment()
        env.info = dataclasses.replace(
            env.info,
            activity_type="illustrate_page",
            attempt=attempt,
            workflow_run_id=workflow_run_id or self.task.run_id,
            heartbeat_details=list(details),
            heartbeat_timeout=timedelta(seconds=30),
        )
        env.on_heartbeat = lambda *beat: self.heartbeats.append(beat)
        return env

    async def attempt(
        self,
        *,
        task: PageTask | None = None,
        attempt: int = 1,
        workflow_run_id: str | None = None,
        details: Sequence[object] = (),
    ) -> PageResult:
        env = self.environment(attempt=attempt, workflow_run_id=workflow_run_id, details=details)
        return await env.run(self.activities().illustrate_page, task or self.task)

    def activities(self) -> IllustratePageActivities:
        return IllustratePageActivities(
            self.sessions, self.illustrator, self.store, self.fetcher, Redactor([SECRET])
        )

    def last_details(self) -> list[object]:
        """The details of the last heartbeat: what the next attempt is started with."""
        return list(self.heartbeats[-1]) if self.heartbeats else []

    def page(self) -> Page:
        with self.sessions() as session:
            page = session.get(Page, self.task.page_id)
            assert page is not None
            return page

    def draft_run(self) -> str | None:
        with self.sessions() as session:
            draft = session.get(PageDraft, self.task.page_id)
            return draft.run_id if draft else None

    def keep_draft(self, run_id: str, data: bytes) -> None:
        with self.sessions() as session:
            books.save_draft(session, self.task.page_id, run_id, data, "image/png")

    def context(self, run_id: str, style_hash: str = STYLE.content_hash) -> dict[str, str]:
        return {"run_id": run_id, "style": STYLE.key, "style_hash": style_hash}


@pytest.fixture
async def bench(sessions: sessionmaker[Session], tmp_path: Path) -> AsyncIterator[Bench]:
    photo = tmp_path / "photo.png"
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), "teal").save(buffer, format="PNG")
    photo.write_bytes(buffer.getvalue())
    run_id = _new_run()
    with sessions() as session:
        book = new_book(
            session, [photo.as_uri()] * 2, texts=["Page 1.", "Page 2."], art_style=STYLE.key
        )
        book_records.claim(
            session,
            books.ILLUSTRATION_RUN,
            book.id,
            contract.illustration_workflow_id(book.id),
            run_id,
        )
        task = page_task(book, book.pages[1], STYLE, run_id)
    fetcher = CountingFetcher(file_root=tmp_path)
    yield Bench(sessions, fetcher, task)
    await fetcher.aclose()


def _paid(bench: Bench) -> tuple[int, int, int]:
    """(model calls made, model calls the database counted, uploads)."""
    return bench.illustrator.calls, bench.page().model_calls, bench.store.uploads[bench.public_id]


def _recorded_ok(bench: Bench, result: PageResult, ref: str) -> None:
    """Recorded OK with the picture's asset ref: an asset id, or an older worker's URL."""
    page = bench.page()
    assert result.moderation_status is ModerationStatus.OK
    assert (result.generated_asset_id or result.generated_image_url) == ref
    assert (page.moderation_status, page.picture_ref) == (ModerationStatus.OK, ref)
    legacy = ref.startswith("https://")
    assert (page.generated_image_url is not None, page.generated_asset_id is None) == (
        legacy,
        legacy,
    )
    assert page.illustrated_by_run_id == bench.task.run_id
    assert bench.draft_run() is None  # a recorded page keeps no draft


# -- nothing to reuse: the model is called once ------------------------------------------


async def test_a_first_attempt_draws_once_stores_once_and_checkpoints_the_url(
    bench: Bench,
) -> None:
    result = await bench.attempt()

    stored, data = bench.store.assets[bench.public_id]
    _recorded_ok(bench, result, bench.public_id)
    assert _paid(bench) == (1, 1, 1)
    assert data == b"drawing-1"
    assert stored.context == bench.context(bench.task.run_id)  # what a retry matches on
    assert bench.fetcher.fetched == {"photo": 1}
    assert not bench.store.finds  # a first attempt of a fresh run looks for nothing
    # The asset's id, never a URL: a signed one must not reach the history.
    assert bench.last_details() == [{"stage": "upload", "asset_id": bench.public_id}]


async def test_a_first_attempt_of_a_fresh_run_ignores_what_may_lie_under_its_ids(
    bench: Bench,
) -> None:
    """Nothing of this run can exist before its first attempt: no look-up is paid for."""
    bench.store.put(bench.public_id, b"planted", bench.context(bench.task.run_id))
    bench.keep_draft(bench.task.run_id, b"planted draft")

    result = await bench.attempt()

    assert _paid(bench) == (1, 1, 1)
    assert not bench.store.finds
    assert bench.store.data_of(bench.public_id) == b"drawing-1"
    _recorded_ok(bench, result, bench.public_id)


# -- rung 1: the URL in the last heartbeat -----------------------------------------------


async def test_a_retry_records_the_url_of_its_last_checkpoint_without_any_call(
    bench: Bench,
) -> None:
    url = "https://cdn.test/v7/kept.png"
    result = await bench.attempt(attempt=2, details=[{"stage": "upload", "image_url": url}])

    _recorded_ok(bench, result, url)
    assert _paid(bench) == (0, 0, 0)
    assert not bench.store.finds and not bench.fetcher.fetched


@pytest.mark.parametrize(
    "details",
    [
        pytest.param([{"stage": "generate"}], id="no-url-yet"),
        pytest.param([{"stage": "upload", "image_url": ""}], id="empty-url"),
        pytest.param(["from an older worker"], id="unknown-shape"),
    ],
)
async def test_a_checkpoint_without_a_url_is_passed_over(
    bench: Bench, details: list[object]
) -> None:
    result = await bench.attempt(attempt=2, details=details)

    assert bench.store.finds[bench.public_id] == 1
    assert _paid(bench) == (1, 1, 1)
    _recorded_ok(bench, result, bench.public_id)


# -- rung 2: the asset stored under the page's id -----------------------------------------


@pytest.mark.parametrize("why", ["retry", "takeover", "reset"])
async def test_an_asset_one_of_our_runs_stored_is_found_and_recorded_without_drawing(
    bench: Bench, why: str
) -> None:
    """A retry; a run that took the claim over from a terminated run (`earlier_run_id`);
    a run reset by an operator (its workflow run id differs from the chain's claim)."""
    earlier = _new_run()
    task = bench.task.model_copy(update={"earlier_run_id": earlier if why == "takeover" else None})
    drawn_by = earlier if why == "takeover" else task.run_id
    stored = bench.store.put(bench.public_id, b"drawn before", bench.context(drawn_by))

    result = await bench.attempt(
        task=task,
        attempt=2 if why == "retry" else 1,
        workflow_run_id=_new_run() if why == "reset" else task.run_id,
    )

    _recorded_ok(bench, result, stored.public_id)
    assert _paid(bench) == (0, 0, 0)
    assert bench.store.finds[bench.public_id] == 1
    assert not bench.fetcher.fetched
    # Checkpointed, so an attempt after this one does not look it up again.
    assert bench.last_details() == [{"stage": "upload", "asset_id": stored.public_id}]


async def test_a_retry_records_the_asset_id_of_its_last_checkpoint_without_any_call(
    bench: Bench,
) -> None:
    details = [{"stage": "upload", "asset_id": bench.public_id}]
    result = await bench.attempt(attempt=2, details=details)

    _recorded_ok(bench, result, bench.public_id)
    assert _paid(bench) == (0, 0, 0)
    assert not bench.store.finds and not bench.fetcher.fetched


async def test_a_run_prepared_before_private_images_finds_the_public_asset_it_stored(
    bench: Bench,
) -> None:
    """A page task without a salt (prepared by a release before private images) names its
    picture as that release did; the public asset an attempt of it stored there is found
    and recorded by its URL, not drawn again."""
    task = bench.task.model_copy(update={"asset_salt": None})
    legacy_id = contract.page_public_id(task.book_id, task.page_number)
    stored = bench.store.put(legacy_id, b"drawn before", bench.context(task.run_id), private=False)

    result = await bench.attempt(task=task, attempt=2)

    _recorded_ok(bench, result, stored.url)
    assert _paid(bench) == (0, 0, 0)
    assert bench.store.finds[legacy_id] == 2  # private first, then public
    assert bench.last_details() == [{"stage": "upload", "image_url": stored.url}]


@pytest.mark.parametrize("whose", ["another-run", "another-style"])
async def test_an_asset_not_drawn_by_our_runs_in_this_style_is_drawn_over(
    bench: Bench, whose: str
) -> None:
    if whose == "another-run":
        context = bench.context(_new_run())
    else:
        context = bench.context(bench.task.run_id, style_hash="an-older-style-hash")
    bench.store.put(bench.public_id, b"not ours", context)

    result = await bench.attempt(attempt=2)

    assert _paid(bench) == (1, 1, 1)
    assert bench.store.data_of(bench.public_id) == b"drawing-1"
    _recorded_ok(bench, result, bench.public_id)


async def test_an_upload_whose_answer_was_lost_is_found_by_its_id_on_the_retry(
    bench: Bench,
) -> None:
    """The CDN stored the image but its answer never came (no checkpoint was sent)."""
    bench.store.lost_answers = 1
    with pytest.raises(ApplicationError) as first:
        await bench.attempt()
    assert not first.value.non_retryable
    assert bench.last_details() == []

    result = await bench.attempt(attempt=2, details=bench.last_details())

    _recorded_ok(bench, result, bench.public_id)
    assert _paid(bench) == (1, 1, 1)
    assert bench.store.finds[bench.public_id] == 1


# -- rung 3: the draft kept in the database -----------------------------------------------


async def test_a_retry_after_a_failed_upload_uploads_the_draft_without_drawing_again(
    bench: Bench,
) -> None:
    bench.store.errors.append(TransientError(f"HTTP 503 from the CDN (key {SECRET})"))
    with pytest.raises(ApplicationError) as first:
        await bench.attempt()
    assert not first.value.non_retryable
    assert first.value.type == contract.PAGE_STAGE_ERROR
    assert first.value.message.startswith("upload: HTTP 503")
    assert SECRET not in first.value.message
    assert bench.draft_run() == bench.task.run_id
    assert bench.page().moderation_status is ModerationStatus.PENDING

    result = await bench.attempt(attempt=2, details=bench.last_details())

    _recorded_ok(bench, result, bench.public_id)
    assert bench.illustrator.calls == bench.page().model_calls == 1
    assert bench.store.data_of(bench.public_id) == b"drawing-1"  # the draft, uploaded
    assert bench.store.uploads[bench.public_id] == 2  # the failed one and this one
    assert bench.fetcher.fetched == {"photo": 1}


@pytest.mark.parametrize(
    ("drafted_by", "takeover", "reused"),
    [
        pytest.param("earlier", True, True, id="the-run-taken-over"),
        pytest.param("another", False, False, id="another-run"),
    ],
)
async def test_a_draft_is_reused_only_from_our_runs(
    bench: Bench, drafted_by: str, takeover: bool, reused: bool
) -> None:
    earlier = _new_run()
    bench.keep_draft(earlier if drafted_by == "earlier" else _new_run(), b"drafted before")
    task = bench.task.model_copy(update={"earlier_run_id": earlier if takeover else None})

    result = await bench.attempt(task=task, attempt=1 if takeover else 2)

    assert bench.store.data_of(bench.public_id) == (b"drafted before" if reused else b"drawing-1")
    assert _paid(bench) == ((0, 0, 1) if reused else (1, 1, 1))
    _recorded_ok(bench, result, bench.public_id)


# -- pages with nothing to draw -----------------------------------------------------------


async def test_a_run_that_no_longer_holds_the_book_returns_the_page_as_it_stands(
    bench: Bench,
) -> None:
    """A late attempt of a run whose claim was taken over must neither draw nor record."""
    with bench.sessions() as session:
        book_records.claim(
            session,
            books.ILLUSTRATION_RUN,
            bench.task.book_id,
            "someone",
            _new_run(),
            stale_run_id=bench.task.run_id,
        )

    result = await bench.attempt(attempt=3, details=[{"stage": "upload", "image_url": "x"}])

    assert result.moderation_status is ModerationStatus.PENDING
    assert result.generated_image_url is None
    assert bench.page().moderation_status is ModerationStatus.PENDING
    assert _paid(bench) == (0, 0, 0)
    assert not bench.store.finds and not bench.fetcher.fetched


async def test_a_page_this_run_recorded_is_returned_as_recorded_on_a_repeat(
    bench: Bench,
) -> None:
    """The attempt's completion was lost after it recorded the page: the retry repeats it."""
    first = await bench.attempt()
    again = await bench.attempt(attempt=2)

    assert again == first
    assert _paid(bench) == (1, 1, 1)
    assert not bench.store.finds


# -- outcomes and errors ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (ContentRefused(f"safety: IMAGE_SAFETY {SECRET}"), ModerationStatus.FLAGGED),
        (PermanentError(f"HTTP 400 INVALID_ARGUMENT {SECRET}"), ModerationStatus.FAILED),
    ],
    ids=["refused", "permanent"],
)
async def test_a_refusal_or_permanent_error_is_recorded_once_with_its_reason(
    bench: Bench, error: Exception, status: ModerationStatus
) -> None:
    """Not raised: the page's outcome is recorded and returned, so Temporal retries nothing."""
    bench.illustrator.errors.append(error)

    result = await bench.attempt()

    page = bench.page()
    assert result.moderation_status is page.moderation_status is status
    reason = page.moderation_reason or ""
    assert reason == result.moderation_reason
    assert reason.startswith("generate: ") and str(error).split()[0] in reason
    assert SECRET not in reason
    assert page.generated_image_url is None
    assert _paid(bench) == (1, 1, 0)
    assert bench.draft_run() is None


async def test_a_transient_model_error_is_retried_after_the_delay_the_provider_asked(
    bench: Bench,
) -> None:
    bench.illustrator.errors.append(TransientError("HTTP 429 RESOURCE_EXHAUSTED", retry_after=7))

    with pytest.raises(ApplicationError) as raised:
        await bench.attempt()

    assert not raised.value.non_retryable
    assert raised.value.type == contract.PAGE_STAGE_ERROR
    assert raised.value.next_retry_delay == timedelta(seconds=7)
    assert raised.value.message == "generate: HTTP 429 RESOURCE_EXHAUSTED"
    assert bench.page().moderation_status is ModerationStatus.PENDING
    assert _paid(bench) == (1, 1, 0)  # the call was paid for and counted


async def test_an_unexpected_error_is_retried_with_its_type_and_no_secret(bench: Bench) -> None:
    bench.illustrator.errors.append(RuntimeError(f"socket closed (key={SECRET})"))

    with pytest.raises(ApplicationError) as raised:
        await bench.attempt()

    assert not raised.value.non_retryable
    assert raised.value.message.startswith("generate: RuntimeError: socket closed")
    assert SECRET not in raised.value.message


async def test_a_page_without_a_photo_fails_without_calling_the_model(bench: Bench) -> None:
    task = bench.task.model_copy(update={"original_image_url": None})

    result = await bench.attempt(task=task)

    assert result.moderation_status is ModerationStatus.FAILED
    assert result.moderation_reason == "fetch photo: page has no photo"
    assert _paid(bench) == (0, 0, 0)


async def test_a_page_deleted_during_the_run_ends_its_activity_without_retries(
    bench: Bench,
) -> None:
    with bench.sessions() as session:
        book = session.get(Book, bench.task.book_id)
        session.delete(book)
        session.commit()

    with pytest.raises(ApplicationError) as raised:
        await bench.attempt()

    assert raised.value.non_retryable
    assert raised.value.type == contract.PAGE_NOT_FOUND
    assert raised.value.message.startswith(f"record: page {bench.task.page_id} not found")
    assert bench.illustrator.calls == 0


# -- cancel and pause ---------------------------------------------------------------------


async def _held_in_model_call(
    bench: Bench, details: ActivityCancellationDetails
) -> asyncio.Task[PageResult]:
    """An attempt held inside its model call, then cancelled with `details`."""
    bench.illustrator.hold = asyncio.Event()
    env = bench.environment()
    running = asyncio.create_task(env.run(bench.activities().illustrate_page, bench.task))
    await asyncio.wait_for(bench.illustrator.arrived.wait(), timeout=5)
    env.cancel(cancellation_details=details)
    return running


async def test_a_cancelled_run_records_that_the_page_was_stopped_in_its_model_call(
    bench: Bench,
) -> None:
    running = await _held_in_model_call(bench, ActivityCancellationDetails(cancel_requested=True))

    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(running, timeout=5)

    page = bench.page()
    assert page.moderation_status is ModerationStatus.FAILED
    assert page.moderation_reason == f"{CANCELLED} during generate"
    assert bench.store.uploads[bench.public_id] == 0


@pytest.mark.parametrize("cause", ["worker_shutdown", "timed_out"])
async def test_an_attempt_stopped_for_another_reason_leaves_the_page_to_the_next(
    bench: Bench, cause: str
) -> None:
    running = await _held_in_model_call(bench, ActivityCancellationDetails(**{cause: True}))

    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(running, timeout=5)

    page = bench.page()
    assert (page.moderation_status, page.moderation_reason) == (ModerationStatus.PENDING, None)


async def test_a_pause_during_the_model_call_lets_the_paid_call_finish_and_be_recorded(
    bench: Bench,
) -> None:
    running = await _held_in_model_call(bench, ActivityCancellationDetails(paused=True))
    await asyncio.sleep(0.05)  # the pause reaches the attempt while the model still draws
    assert not running.done()
    assert bench.illustrator.hold is not None
    bench.illustrator.hold.set()

    result = await asyncio.wait_for(running, timeout=5)

    _recorded_ok(bench, result, bench.public_id)
    assert _paid(bench) == (1, 1, 1)


class RecordingLimiter(SharedLimiter):
    """The real limiter (its own row, at a rate that never waits here), noting who asks."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        super().__init__(sessions, 6000.0, name=f"test-{uuid.uuid4().hex[:8]}")
        self.asked: list[tuple[int | None, str | None]] = []

    async def acquire(
        self, priority_key: int | None = None, fairness_key: str | None = None
    ) -> quota.Slot:
        self.asked.append((priority_key, fairness_key))
        return await super().acquire(priority_key, fairness_key)


async def test_the_model_call_waits_in_the_workers_queue_with_the_pages_priority(
    bench: Bench,
) -> None:
    """The worker's queue orders its waiting pages by the activity's Temporal Priority (the
    book's priority, its owner as fairness key): the activity must hand both over."""
    limiter = RecordingLimiter(bench.sessions)
    activities = IllustratePageActivities(
        bench.sessions,
        bench.illustrator,
        bench.store,
        bench.fetcher,
        Redactor([SECRET]),
        limiter=limiter,
    )
    env = bench.environment()
    env.info = dataclasses.replace(
        env.info, priority=Priority(priority_key=1, fairness_key="parent-x")
    )
    result = await env.run(activities.illustrate_page, bench.task)
    assert result.moderation_status is ModerationStatus.OK
    assert limiter.asked == [(1, "parent-x")]
    assert _paid(bench) == (1, 1, 1)
