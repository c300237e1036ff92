"""Every provider failure ends in the right page outcome, and no image is paid for twice.

Each row of docs/behaviour.md's failure table is a page here, run through the real workflow and
worker, the real google-genai and cloudinary SDKs, against the local fake servers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle

from storywink.contract import BookOutcome, BookStatus, ModerationStatus
from storywink.db.connection import Database
from storywink.db.models import Page, PageDraft
from tests.support.fakes.cloudinary_server import CloudFault
from tests.support.fakes.gemini_server import ANSWER_FORMATS, Fault, interim_png
from tests.support.helpers import wait_until
from tests.support.pipeline import Pipeline
from tests.support.provider_fakes import CLOUD, GEMINI_KEY, Fakes
from tests.support.services import PG_ADMIN_URL

ATTEMPTS = 3  # page_retry_attempts for the matrix: "retried" rows use all of them
MAX_FETCH_BYTES = 1_500_000


@dataclass(frozen=True)
class Row:
    """One way a provider can answer, and what the page must end as."""

    name: str
    status: ModerationStatus
    says: str = ""  # what the page's reason must contain, after its stage
    stage: str = ""  # the stage the reason must start with
    model_calls: int = 1
    faults: tuple[Fault, ...] = ()  # the model's answers to this page, in order
    photo: Callable[[Fakes, str], str] | None = None  # serves a bad photo, returns its URL
    photo_hits: int | None = None  # how often the photo must have been fetched


def _flagged(name: str, says: str, fault: Fault) -> Row:
    return Row(name, ModerationStatus.FLAGGED, says, "generate", faults=(fault,))


def _recovers(name: str, *faults: Fault) -> Row:
    return Row(name, ModerationStatus.OK, model_calls=len(faults) + 1, faults=faults)


def _fails_at_once(name: str, says: str, fault: Fault) -> Row:
    return Row(name, ModerationStatus.FAILED, says, "generate", faults=(fault,))


def _bad_photo(name: str, says: str, serve: Callable[[Fakes, str], str], hits: int = 1) -> Row:
    return Row(name, ModerationStatus.FAILED, says, "fetch photo", 0, photo=serve, photo_hits=hits)


SIGNATURE = "sig-0123456789-secret"


def _photo_error(status: int) -> Callable[[Fakes, str], str]:
    # A signed URL, as a photo bucket hands out: the signature must stay out of reasons.
    return lambda fakes, path: f"{fakes.gemini.add_error(path, status)}?Signature={SIGNATURE}"


def _photo_bytes(data: bytes, content_type: str) -> Callable[[Fakes, str], str]:
    return lambda fakes, path: fakes.gemini.add_image(path, data, content_type)


SAFETY = ("IMAGE_SAFETY", "SAFETY", "PROHIBITED_CONTENT", "IMAGE_PROHIBITED_CONTENT")
ROWS: list[Row] = [
    # Page 1 is the title page (its prompt names no page number): it takes the OK row.
    Row("image", ModerationStatus.OK),
    Row(
        "thinking: two interim drafts, then the final",
        ModerationStatus.OK,
        faults=(Fault.thinking(2, flagged=False),),
    ),
    _flagged("blockReason", "blocked: OTHER", Fault.blocked("OTHER")),
    *(_flagged(reason, f"safety: {reason}", Fault.finish(reason)) for reason in SAFETY),
    _flagged("RECITATION", "copyright: RECITATION", Fault.finish("RECITATION")),
    _flagged("IMAGE_RECITATION", "copyright: IMAGE_RECITATION", Fault.finish("IMAGE_RECITATION")),
    _flagged("NO_IMAGE", "no image: NO_IMAGE", Fault.finish("NO_IMAGE")),
    _flagged("text only", "no image: STOP: I cannot draw", Fault.text_only()),
    Row(
        "undecodable bytes",
        ModerationStatus.FAILED,
        "model sent image/png that is not an image",
        "generate",
        model_calls=ATTEMPTS,
        faults=(Fault.not_an_image(),) * ATTEMPTS,
    ),
    Row(
        "wrong mime type",
        ModerationStatus.FAILED,
        "model declared image/jpeg but sent image/png",
        "generate",
        model_calls=ATTEMPTS,
        faults=(Fault.mislabelled_image(),) * ATTEMPTS,
    ),
    _recovers("429 RetryInfo", Fault.rate_limited("2s")),
    _recovers("408 then 500", Fault.http(408), Fault.http(500)),
    _recovers("502 then 503", Fault.http(502), Fault.http(503)),
    _recovers("504 then connection reset", Fault.http(504), Fault.reset()),
    _recovers("no answer within the model timeout", Fault.hang(30)),
    _fails_at_once(
        "400", "HTTP 400 INVALID_ARGUMENT: Image too small", Fault.http(400, "Image too small")
    ),
    # A fleet fault (the key or the model refused) is not the page's: it waits and is
    # drawn once the fault clears (here: after one refusal).
    _recovers("400 API_KEY_INVALID (fleet fault)", Fault.bad_key()),
    _recovers("401 (fleet fault)", Fault.http(401)),
    _recovers("403 bad key (fleet fault)", Fault.http(403, "API key not valid.")),
    _recovers("404 model not found (fleet fault)", Fault.http(404, "models/x is not found")),
    _bad_photo("photo 404", "HTTP 404", _photo_error(404)),
    _bad_photo(
        "photo not an image",
        "not an image (content-type text/html)",
        _photo_bytes(b"<html>sign in</html>", "text/html"),
    ),
    _bad_photo(
        "photo too large",
        f"larger than {MAX_FETCH_BYTES} bytes",
        _photo_bytes(b"\xff\xd8\xff" + bytes(MAX_FETCH_BYTES), "image/jpeg"),
    ),
    _bad_photo("photo 503", "HTTP 503", _photo_error(503), hits=ATTEMPTS),
]


def _marker(number: int) -> str:
    return f"Page {number} of the story."


def _reason_problem(row: Row, reason: str) -> str | None:
    if not reason.startswith(f"{row.stage}: " if row.stage else ""):
        return f"reason {reason!r} does not start with the stage {row.stage!r}"
    if row.says not in reason:
        return f"reason {reason!r} does not say {row.says!r}"
    if len(reason) > 300 or any(secret in reason for secret in (GEMINI_KEY, CLOUD[2], SIGNATURE)):
        return f"reason {reason!r} is too long or holds a secret"
    return None


@pytest.mark.parametrize("fakes", ANSWER_FORMATS, indirect=True)
async def test_every_model_and_photo_failure_ends_in_its_outcome(
    fake_pipeline: Pipeline, fakes: Fakes
) -> None:
    pipeline = fake_pipeline.with_settings(
        page_retry_attempts=ATTEMPTS,
        # Short enough for the hanging row (30 s) to time out soon, long enough that an
        # answered call never does while the parallel suite loads the machine.
        model_timeout_seconds=4.0,
        max_fetch_bytes=MAX_FETCH_BYTES,
        illustration_concurrency=len(ROWS),
        fleet_fault_retry_seconds=1.0,
    )
    urls = fakes.photo_urls("matrix", len(ROWS))
    for number, row in enumerate(ROWS, start=1):
        if row.photo is not None:
            urls[number - 1] = row.photo(fakes, f"/photos/matrix/bad-{number}.jpg")
        for fault in row.faults:
            fakes.gemini.fail_when(_marker(number), fault, times=1)
    assert ROWS[0].status is ModerationStatus.OK and not ROWS[0].faults
    book_id = pipeline.book(urls)

    outcome = await pipeline.illustrate(book_id, history="partial_flagged_failed_retried")

    _, pages, _ = pipeline.load(book_id)
    problems = []
    for page, row in zip(pages, ROWS, strict=True):
        seen = (page.moderation_status, page.model_calls)
        if seen != (row.status, row.model_calls):
            problems.append(f"{row.name}: ended {seen}, not {(row.status, row.model_calls)}")
        if row.status is not ModerationStatus.OK:
            problem = _reason_problem(row, page.moderation_reason or "")
            problems += [f"{row.name}: {problem}"] if problem else []
        calls = fakes.gemini.calls_with(_marker(page.page_number))
        if page.page_number > 1 and calls != row.model_calls:
            problems.append(f"{row.name}: the fake model saw {calls} calls")
        if row.photo_hits is not None:
            hits = fakes.gemini.static_hits(f"/photos/matrix/bad-{page.page_number}.jpg")
            if hits != row.photo_hits:
                problems.append(f"{row.name}: photo fetched {hits} times")
    assert not problems, "\n".join(problems)
    assert outcome.status is BookStatus.PARTIAL
    # The thinking answer's page keeps the final picture, not a draft.
    thinking = next(n for n, row in enumerate(ROWS, start=1) if row.name.startswith("thinking"))
    asset = fakes.cloudinary.asset(pipeline.picture_id(book_id, thinking))
    assert asset is not None and asset.data not in (interim_png(0), interim_png(1))

    # The 429 said "retry in 2s": the second call came no sooner.
    number = next(n for n, row in enumerate(ROWS, start=1) if row.name == "429 RetryInfo")
    times = [r.at for r in fakes.gemini.requests if _marker(number) in r.prompt]
    assert times[1] - times[0] >= 2.0


async def _last_attempt(handle: WorkflowHandle[object, BookOutcome]) -> int:
    """The attempt number of the page activity that ran last (from the run's history)."""
    attempts = [
        event.activity_task_started_event_attributes.attempt
        async for event in handle.fetch_history_events()
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
    ]
    return max(attempts)


async def test_model_unreachable_is_retried_then_failed(
    fake_pipeline: Pipeline, fakes: Fakes
) -> None:
    closed_port = fakes.gemini.base_url.rsplit(":", 1)[0] + ":9"  # discard port: refused
    pipeline = fake_pipeline.with_settings(gemini_base_url=closed_port, page_retry_attempts=2)
    book_id = pipeline.book(1, photos="refused")
    async with pipeline.worker():
        handle = await pipeline.start(book_id)
        outcome = await handle.result()

    _, (page,), _ = pipeline.load(book_id)
    assert outcome.pages_with_image == 0 and outcome.pages_failed == outcome.pages_total
    assert page.moderation_status is ModerationStatus.FAILED
    assert (page.moderation_reason or "").startswith("generate: connection error")
    assert await _last_attempt(handle) == 2  # retried


async def test_style_reference_unreachable_fails_pages_without_calling_the_model(
    fake_pipeline: Pipeline, fakes: Fakes
) -> None:
    pipeline = fake_pipeline.with_settings(style_assets_url=fakes.gemini.url("/nowhere/"))
    book_id = pipeline.book(2, photos="nostyle")
    outcome = await pipeline.illustrate(book_id)

    _, pages, _ = pipeline.load(book_id)
    assert outcome.pages_with_image == 0 and outcome.pages_failed == outcome.pages_total
    for page in pages:
        reason = page.moderation_reason or ""
        assert reason.startswith("fetch style: style reference") and "HTTP 404" in reason
    assert fakes.gemini.call_count == 0


# ----- the CDN -----


def _draft_count(database: Database, book_id: str) -> int:
    """Drafts of this book's pages (other tests' books may keep theirs: a terminated run)."""
    with database.sessions() as session:
        pages = select(Page.id).where(Page.book_id == book_id)
        count = select(func.count()).select_from(PageDraft).where(PageDraft.page_id.in_(pages))
        return session.scalar(count) or 0


async def test_cdn_outage_is_retried_and_the_image_is_not_generated_again(
    fake_pipeline: Pipeline, fakes: Fakes
) -> None:
    pipeline = fake_pipeline.with_settings(page_retry_attempts=5, fetch_timeout_seconds=1.5)
    for fault in (CloudFault.server_error(500), CloudFault.rate_limited(), CloudFault.reset()):
        fakes.cloudinary.fail_next_uploads(1, fault)
    book_id = pipeline.book(1, photos="cdn")
    outcome = await pipeline.illustrate(book_id)

    _, (page,), _ = pipeline.load(book_id)
    assert outcome.status is BookStatus.COMPLETED
    assert fakes.cloudinary.upload_attempts == 4
    assert (page.model_calls, fakes.gemini.call_count) == (1, 1)  # never paid twice
    asset = fakes.cloudinary.asset(pipeline.picture_id(book_id, 1))
    assert asset is not None and asset.delivery_type == "authenticated"
    assert page.generated_asset_id == asset.public_id
    assert _draft_count(pipeline.database, book_id) == 0  # the checkpoint is gone once recorded


async def test_cdn_timeout_is_retried_without_a_second_model_call(
    fake_pipeline: Pipeline, fakes: Fakes
) -> None:
    pipeline = fake_pipeline.with_settings(page_retry_attempts=4, fetch_timeout_seconds=1.0)
    fakes.cloudinary.fail_next_uploads(1, CloudFault.hang(3))
    book_id = pipeline.book(1, photos="cdnslow")
    outcome = await pipeline.illustrate(book_id)

    _, (page,), _ = pipeline.load(book_id)
    assert outcome.status is BookStatus.COMPLETED
    assert page.moderation_status is ModerationStatus.OK
    assert (page.model_calls, fakes.gemini.call_count) == (1, 1)


async def test_cdn_bad_credentials_wait_and_never_draw_the_page_twice(
    fake_pipeline: Pipeline, fakes: Fakes
) -> None:
    # A fleet fault: the page is not settled for it but tried again (here twice in all,
    # without the pausing worker process); the image drawn once is reused from the draft.
    pipeline = fake_pipeline.with_settings(
        cloudinary_url=fakes.cloudinary.cloudinary_url("wrong-secret"),
        fleet_fault_retry_seconds=0.5,
        page_retry_attempts=2,
    )
    book_id = pipeline.book(1, photos="cdn401")
    outcome = await pipeline.illustrate(book_id)

    _, (page,), _ = pipeline.load(book_id)
    assert outcome.pages_with_image == 0 and outcome.pages_failed == outcome.pages_total
    reason = page.moderation_reason or ""
    assert reason.startswith("upload: unauthorized: ") and "(fleet fault: CLOUDINARY_URL)" in reason
    assert "wrong-secret" not in reason
    # Tried again, not settled: the second attempt's look-up of an earlier upload met the
    # same refusal.
    assert fakes.cloudinary.upload_attempts == 1 and fakes.cloudinary.admin_calls == 1
    assert fakes.gemini.call_count == 1  # the second attempt reused the draft
    assert _draft_count(pipeline.database, book_id) == 0  # finalize cleared the unused draft


async def test_a_fleet_fault_fails_the_page_once_its_bound_has_passed(
    fake_pipeline: Pipeline, fakes: Fakes
) -> None:
    fakes.gemini.revoke_key()
    pipeline = fake_pipeline.with_settings(fleet_fault_max_hours=1e-9)
    book_id = pipeline.book(1, photos="fleetbound")
    outcome = await pipeline.illustrate(book_id)

    _, (page,), _ = pipeline.load(book_id)
    assert outcome.pages_failed == 1
    assert page.moderation_reason == (
        "generate: HTTP 400 INVALID_ARGUMENT: API key not valid. Please pass a valid API key."
    )
    assert fakes.gemini.call_count == 1  # settled at once: the page had waited its bound


# ----- the database -----


@dataclass
class _Outage:
    """Makes one PostgreSQL database refuse connections, as a failed-over or restarting
    server does, without touching the server other tests share."""

    name: str
    admin: psycopg.Connection[tuple[object, ...]] = field(init=False)

    def __post_init__(self) -> None:
        self.admin = psycopg.connect(PG_ADMIN_URL, autocommit=True)

    def begin(self) -> None:
        self.admin.execute(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS false')
        self.admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            (self.name,),
        )

    def end(self) -> None:
        self.admin.execute(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS true')
        self.admin.close()


@pytest.mark.postgresql_only  # an embedded SQLite file cannot become unreachable
async def test_database_down_while_recording_reuses_the_stored_image(
    fake_pipeline: Pipeline, database_url: str, fakes: Fakes
) -> None:
    pipeline = fake_pipeline.with_settings(page_retry_attempts=30, page_retry_max_seconds=0.5)
    book_id = pipeline.book(1, photos="dbdown")
    # The model takes 2 s: the database goes down while it draws, so the draft cannot be
    # kept and the outcome cannot be recorded, but the upload works.
    fakes.gemini.set_latency(2)
    outage = _Outage(str(make_url(database_url).database))
    async with pipeline.worker():
        handle = await pipeline.start(book_id)
        await wait_until(lambda: fakes.gemini.call_count > 0)
        outage.begin()
        try:
            await wait_until(lambda: fakes.cloudinary.upload_attempts > 0)
            await asyncio.sleep(2)  # a few record attempts fail
            assert not (await handle.describe()).close_time
        finally:
            outage.end()
        outcome = await handle.result()

    _, (page,), _ = pipeline.load(book_id)
    assert outcome.status is BookStatus.COMPLETED
    assert page.moderation_status is ModerationStatus.OK
    assert (page.model_calls, fakes.gemini.call_count) == (1, 1)
    assert fakes.cloudinary.uploads_of(pipeline.picture_id(book_id, 1)) == 1
    assert await _last_attempt(handle) > 1  # the record was retried
    # Found once (by its deterministic id, or known from the heartbeat), then remembered.
    assert fakes.cloudinary.admin_calls <= 1
