"""Erasing a book, through the real dev server, a real worker and the real SDKs against the
fakes: every asset under the book's folder and every row go; a run on the book is stopped
first; nothing may start on it meanwhile; the CDN failing, the database away and a worker
killed with kill -9 only delay it; what stays in Temporal's history is ids, never a photo."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from subprocess import CompletedProcess

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from temporalio.api.enums.v1 import EventType
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
)

from storywink.book.inputs import NewBook
from storywink.book.refusals import BookBeingErased, BookNotFound
from storywink.book.report import build_report
from storywink.book.upload import create_book_from_photos
from storywink.config import Settings
from storywink.contract import BookStatus
from storywink.cost.budgets import book_scope
from storywink.db.connection import Database
from storywink.db.engine import make_engine, make_session_factory
from storywink.db.models import Book, CostBudget, ModelCall, Notification, Page, PageDraft
from storywink.demo.sample_book import write_sample_photos
from storywink.erasure.client import ErasureClient
from storywink.erasure.contract import (
    BOOK_ERASURE_WORKFLOW,
    ErasureOutcome,
    book_asset_prefix,
    erasure_workflow_id,
)
from storywink.illustration.client import IllustrationClient
from storywink.providers.factory import build_store
from storywink.story.client import StoryClient
from tests.support import forked_cli
from tests.support.fakes.cloudinary_server import CloudFault
from tests.support.helpers import (
    keep_history,
    picture_id,
    running_worker,
    start,
    temporal_cli,
    wait_until,
)
from tests.support.pg_proxy import PostgresProxy
from tests.support.provider_fakes import Fakes, SettingsFactory
from tests.support.web_app import WEB_SETTINGS, api_client, running_app
from tests.support.worker_processes import wait_until_ready, worker_processes

SECRET_PREFIXES = (
    "GEMINI",
    "GOOGLE",
    "CLOUDINARY",
    "DATABASE",
    "TEMPORAL",
    "STORAGE",
    "ILLUSTRATOR",
)
PNG_PIXEL = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
URL = re.compile(r"""(?:https?|file)://[^\s"'\\]+""")


async def _book_from_photos(
    settings: Settings, database: Database, tmp_path: Path, pages: int, user_id: str = "parent-1"
) -> tuple[str, list[bytes]]:
    """A STORY_READY book made as `storywink book create` makes it: its originals uploaded
    to the CDN under the book's folder. The photos' bytes, to look for in histories."""
    folder = tmp_path / f"photos-{user_id}-{pages}"
    photos = write_sample_photos(folder, pages)
    texts = ["Mia's Big Day", *(f"Page {n} of the story." for n in range(2, pages + 1))]
    book = NewBook.checked(
        title="Mia's Big Day", child_name="Mia", art_style="vignette", user_id=user_id
    )
    store = build_store(settings)
    book_id = await create_book_from_photos(store, database.sessions, book, photos, texts)
    return book_id, [photo.read_bytes() for photo in photos]


def _erasures(client: Client, settings: Settings, database: Database) -> ErasureClient:
    return ErasureClient(client, database.sessions, settings.temporal_task_queue)


def _rows_of(database: Database, book_id: str) -> dict[str, int]:
    with database.sessions() as session:
        page_ids = select(Page.id).where(Page.book_id == book_id).scalar_subquery()
        count = {
            "books": select(func.count()).select_from(Book).where(Book.id == book_id),
            "pages": select(func.count()).select_from(Page).where(Page.book_id == book_id),
            "notifications": select(func.count())
            .select_from(Notification)
            .where(Notification.book_id == book_id),
            "page_drafts": select(func.count())
            .select_from(PageDraft)
            .where(PageDraft.page_id.in_(page_ids)),
            "book_budget": select(func.count())
            .select_from(CostBudget)
            .where(CostBudget.scope == book_scope(book_id)),
        }
        return {name: session.scalar(query) or 0 for name, query in count.items()}


PAYLOAD_DATA = re.compile(r'"data":\s*"([A-Za-z0-9+/=]+)"')


async def _history_text(client: Client, workflow_id: str) -> str:
    """Every run of the workflow's history, as the JSON an operator exports, followed by
    each payload decoded (the export holds them as base64)."""
    texts = []
    async for execution in client.list_workflows(f"WorkflowId='{workflow_id}'"):
        handle = client.get_workflow_handle(workflow_id, run_id=execution.run_id)
        exported = (await handle.fetch_history()).to_json()
        texts.append(exported)
        for data in PAYLOAD_DATA.findall(exported):
            texts.append(base64.b64decode(data).decode("utf-8", "replace"))
    assert len(texts) > 1, f"no run of {workflow_id} with payloads"
    return "\n".join(texts)


def _assert_no_image_bytes(history: str, images: list[bytes]) -> None:
    """No photo or picture, whole or in part, as base64 (how bytes would sit in JSON)."""
    for image in images:
        encoded = base64.b64encode(image).decode()
        middle = len(encoded) // 2
        for stretch in (encoded[96:160], encoded[middle : middle + 64], encoded[-80:-16]):
            assert stretch not in history


async def _assert_no_url_serves(history: str) -> list[str]:
    """Every URL left in a history answers 404 now: none shows a photo or a picture."""
    urls = sorted(set(URL.findall(history)))
    async with httpx.AsyncClient(timeout=5) as http:
        for url in urls:
            if url.startswith("file://"):
                assert not await asyncio.to_thread(Path(url.removeprefix("file://")).exists), url
                continue
            if "/styles/" in url:  # the style library's shared references: no child's photo
                continue
            assert (await http.get(url)).status_code == 404, url
    return urls


@pytest.mark.each_database  # the rows go in one transaction, on each database
async def test_an_illustrated_book_is_erased_everywhere_and_histories_keep_ids_only(
    temporal_client: Client,
    database: Database,
    fakes: Fakes,
    provider_settings: SettingsFactory,
    tmp_path: Path,
) -> None:
    settings = provider_settings()
    cdn = fakes.cloudinary
    book_id, photos = await _book_from_photos(settings, database, tmp_path, 3)
    other_id, _ = await _book_from_photos(settings, database, tmp_path, 1, user_id="parent-2")
    prefix = book_asset_prefix(book_id)
    async with running_worker(temporal_client, settings, database):
        illustrated = await (await start(temporal_client, settings, book_id)).result()
        assert illustrated.status is BookStatus.COMPLETED
        # What a redraw and a release before private images leave too: another version, a
        # public copy under the old readable name.
        picture = cdn.asset(picture_id(database, book_id, 2))
        assert picture is not None and picture.delivery_type == "authenticated"
        pictures = [
            asset.data
            for _, public_id in cdn.assets_under(prefix)
            if (asset := cdn.asset(public_id)) is not None
        ]
        cdn.put(picture_id(database, book_id, 2, 1), picture.data, delivery_type="authenticated")
        cdn.put(f"{prefix}originals/page_1", photos[0], delivery_type="upload")
        cdn.delete_limit = 3  # the deletes come in pages, as Cloudinary's 1000 a call
        assert len(cdn.assets_under(prefix)) == 3 + 3 + 2

        erasures = _erasures(temporal_client, settings, database)
        run = await erasures.erase_book(book_id)
        again = await erasures.erase_book(book_id)  # a double click: the same run
        outcome = await erasures.wait_for_erasure(book_id)
    await keep_history(temporal_client.get_workflow_handle(run.workflow_id), "erased_completed")

    assert (run.workflow_id, again.run_id) == (erasure_workflow_id(book_id), run.run_id)
    assert outcome.found and outcome.assets_deleted == 8
    assert (outcome.rows.books, outcome.rows.pages, outcome.rows.notifications) == (1, 3, 1)
    assert cdn.assets_under(prefix) == []
    assert len(cdn.assets_under(book_asset_prefix(other_id))) == 1  # nobody else's
    assert _rows_of(database, book_id) == dict.fromkeys(_rows_of(database, book_id), 0)
    with pytest.raises(BookNotFound):
        await erasures.erase_book(book_id)
    # The ledger stays, ids and money only: the billing record of calls that were made.
    with database.sessions() as session:
        calls = session.scalars(select(ModelCall).where(ModelCall.book_id == book_id)).all()
    assert len(calls) == 3 and all(call.cost_micro_usd for call in calls)

    # Temporal keeps the histories of the erasure and of the book's runs until retention.
    erasure_history = await _history_text(temporal_client, run.workflow_id)
    assert URL.findall(erasure_history) == []
    assert "Mia" not in erasure_history and "Page 2 of the story" not in erasure_history
    book_history = await _history_text(temporal_client, f"book-illustration-{book_id}")
    for history in (erasure_history, book_history):
        _assert_no_image_bytes(history, photos + pictures)
    left = await _assert_no_url_serves(book_history)
    # Private images: the run's history names its images by asset id, never by a URL.
    assert [url for url in left if book_id in url] == []
    assert picture.public_id in book_history


async def test_a_run_on_the_book_is_stopped_first_and_nothing_starts_during_erasure(
    temporal_client: Client,
    database: Database,
    fakes: Fakes,
    provider_settings: SettingsFactory,
    tmp_path: Path,
) -> None:
    settings = provider_settings()
    book_id, _ = await _book_from_photos(settings, database, tmp_path, 3)
    fakes.gemini.set_latency(30)  # every page is in its model call when the erasure comes
    # Pages of a first run never ask the Admin API: this hang is the erasure's first delete.
    fakes.cloudinary.fail_next_admin(1, CloudFault.hang(4))
    illustrations = IllustrationClient(
        temporal_client, database.sessions, settings.temporal_task_queue
    )
    stories = StoryClient(temporal_client, database.sessions, settings.temporal_task_queue)
    async with running_worker(temporal_client, settings, database):
        illustration = await illustrations.start_illustration(book_id)
        await wait_until(lambda: fakes.gemini.call_count == 3)
        erasures = _erasures(temporal_client, settings, database)
        await erasures.erase_book(book_id)

        def erasing() -> bool:
            with database.sessions() as session:
                book = session.get(Book, book_id)
                return book is not None and book.status is BookStatus.ERASING

        await wait_until(erasing, within=60)
        with pytest.raises(BookBeingErased, match="is being erased"):
            await illustrations.start_illustration(book_id)
        with pytest.raises(BookBeingErased):
            await stories.start_story(book_id)
        with pytest.raises(BookBeingErased):
            await illustrations.redraw_page(book_id, 2, "make the dog brown")
        refused = await start(temporal_client, settings, book_id)  # the temporal CLI's way
        outcome = await erasures.wait_for_erasure(book_id)
        refused_end = await refused.describe()
    await keep_history(
        temporal_client.get_workflow_handle(erasure_workflow_id(book_id)), "erased_after_a_cancel"
    )

    ended = await temporal_client.get_workflow_handle(
        illustration.workflow_id, run_id=illustration.run_id
    ).describe()
    assert ended.status is WorkflowExecutionStatus.CANCELED  # settled, then erased
    assert outcome.stopped_workflow_ids == (illustration.workflow_id,)
    assert refused_end.status is WorkflowExecutionStatus.FAILED
    assert fakes.cloudinary.assets_under(book_asset_prefix(book_id)) == []
    assert _rows_of(database, book_id)["books"] == 0


async def test_a_page_redraw_in_flight_is_stopped_and_its_new_version_erased_too(
    temporal_client: Client,
    database: Database,
    fakes: Fakes,
    provider_settings: SettingsFactory,
    tmp_path: Path,
) -> None:
    settings = provider_settings()
    book_id, _ = await _book_from_photos(settings, database, tmp_path, 2)
    illustrations = IllustrationClient(
        temporal_client, database.sessions, settings.temporal_task_queue
    )
    async with running_worker(temporal_client, settings, database):
        await (await start(temporal_client, settings, book_id)).result()
        fakes.gemini.set_latency(30)
        redraw = await illustrations.redraw_page(book_id, 2, "make the dog brown")
        await wait_until(lambda: fakes.gemini.call_count == 3)  # the redraw in its model call
        erasures = _erasures(temporal_client, settings, database)
        await erasures.erase_book(book_id)
        outcome = await asyncio.wait_for(erasures.wait_for_erasure(book_id), timeout=90)

    assert outcome.stopped_workflow_ids == (redraw.workflow_id,)
    assert fakes.cloudinary.assets_under(book_asset_prefix(book_id)) == []
    assert _rows_of(database, book_id)["books"] == 0


async def test_the_temporal_cli_erases_a_local_storage_book_files_and_sidecars(
    temporal_client: Client, database: Database, settings: Settings, tmp_path: Path
) -> None:
    """The embedded defaults: the offline illustrator, local storage."""
    book_id, _ = await _book_from_photos(settings, database, tmp_path, 2)
    folder = settings.storage_dir / "storywink" / book_id
    async with running_worker(temporal_client, settings, database):
        await (await start(temporal_client, settings, book_id)).result()
        assert len(list(folder.rglob("*.png.json"))) == 4  # originals and pictures, sidecars
        await temporal_cli(
            settings,
            "workflow",
            "start",
            "--type",
            BOOK_ERASURE_WORKFLOW,
            "--task-queue",
            settings.temporal_task_queue,
            "--workflow-id",
            erasure_workflow_id(book_id),
            "--input",
            json.dumps({"book_id": book_id}),
        )
        handle: WorkflowHandle[object, ErasureOutcome] = temporal_client.get_workflow_handle(
            erasure_workflow_id(book_id), result_type=ErasureOutcome
        )
        outcome = await handle.result()

    assert outcome.assets_deleted == 4
    assert not folder.exists()
    assert [p for p in settings.storage_dir.rglob("*") if book_id in str(p)] == []
    assert _rows_of(database, book_id)["pages"] == 0


async def test_a_terminated_erasure_is_listed_stuck_and_a_new_one_finishes_it(
    temporal_client: Client,
    database: Database,
    fakes: Fakes,
    provider_settings: SettingsFactory,
    tmp_path: Path,
) -> None:
    settings = provider_settings()
    book_id, _ = await _book_from_photos(settings, database, tmp_path, 2)
    fakes.cloudinary.fail_next_admin(1, CloudFault.hang(30))
    erasures = _erasures(temporal_client, settings, database)
    async with running_worker(temporal_client, settings, database):
        first = await erasures.erase_book(book_id)
        handle = temporal_client.get_workflow_handle(first.workflow_id)
        await wait_until(lambda: fakes.cloudinary.admin_calls == 1)  # inside its delete
        await handle.terminate(reason="operator")
        report = await build_report(
            temporal_client, database.sessions, settings.temporal_task_queue
        )
        with pytest.raises(BookBeingErased):  # a stuck erasure still refuses other runs
            await IllustrationClient(
                temporal_client, database.sessions, settings.temporal_task_queue
            ).start_illustration(book_id)
        second = await erasures.erase_book(book_id)
        outcome = await erasures.wait_for_erasure(book_id)

    # The database is the test worker's: other tests' books may be in the report too.
    assert book_id in report.stuck
    (stuck,) = [book for book in report.in_progress if book.book_id == book_id]
    assert stuck.status is BookStatus.ERASING and stuck.run is not None
    assert stuck.run.hint and f"storywink book delete {book_id}" in stuck.run.hint
    assert second.run_id != first.run_id
    assert outcome.found and outcome.rows.pages == 2
    assert fakes.cloudinary.assets_under(book_asset_prefix(book_id)) == []


async def test_an_unknown_book_gets_its_folder_swept_and_bad_input_fails_clearly(
    temporal_client: Client,
    database: Database,
    fakes: Fakes,
    provider_settings: SettingsFactory,
) -> None:
    """An id with no book (a `book create` that failed after uploading, an erasure asked
    again) has its folder swept; a start without a book id fails at once, naming it."""
    settings = provider_settings()
    stray = "storywink/no-such-book/originals/page_1"
    fakes.cloudinary.put(stray, PNG_PIXEL)
    async with running_worker(temporal_client, settings, database):
        swept: ErasureOutcome = await temporal_client.execute_workflow(
            BOOK_ERASURE_WORKFLOW,
            {"book_id": "no-such-book"},
            id=erasure_workflow_id("no-such-book"),
            task_queue=settings.temporal_task_queue,
            result_type=ErasureOutcome,
        )
        with pytest.raises(WorkflowFailureError) as bad:
            await temporal_client.execute_workflow(
                BOOK_ERASURE_WORKFLOW,
                {"book": "x"},
                id=f"{erasure_workflow_id('x')}-bad",
                task_queue=settings.temporal_task_queue,
            )

    assert (swept.found, swept.assets_deleted, swept.rows.books) == (False, 1, 0)
    assert fakes.cloudinary.assets_under("storywink/no-such-book/") == []
    assert 'BookErasure takes one input, {"book_id": "..."}' in str(bad.value.cause)


# ----- faults: the CDN, the database, a worker killed -----


@contextmanager
def _proxied(database_url: str) -> Iterator[tuple[PostgresProxy, str]]:
    url = make_url(database_url)
    with PostgresProxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
        proxied = url.set(host="127.0.0.1", port=proxy.port)
        yield proxy, proxied.render_as_string(hide_password=False)


async def _steps_retried(handle: WorkflowHandle[object, ErasureOutcome]) -> int:
    """How many activity attempts of the run were retries."""
    retries = 0
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            retries += event.activity_task_started_event_attributes.attempt > 1
    return retries


@pytest.mark.postgresql_only  # an embedded SQLite file cannot become unreachable
async def test_the_cdn_answering_500_and_429_and_the_database_away_only_delay_erasure(
    temporal_client: Client,
    database: Database,
    database_url: str,
    fakes: Fakes,
    provider_settings: SettingsFactory,
    tmp_path: Path,
) -> None:
    settings = provider_settings()
    book_id, _ = await _book_from_photos(settings, database, tmp_path, 3)
    cdn = fakes.cloudinary
    cdn.fail_next_admin(2, CloudFault.server_error(500))
    cdn.fail_next_admin(2, CloudFault.rate_limited(429))
    with _proxied(database_url) as (proxy, proxied_url):
        settings = settings.model_copy(update={"database_url": SecretStr(proxied_url)})
        engine = make_engine(proxied_url)
        through_proxy = Database(engine, make_session_factory(engine))
        try:
            async with running_worker(temporal_client, settings, through_proxy):
                run = await _erasures(temporal_client, settings, database).erase_book(book_id)
                handle = temporal_client.get_workflow_handle(
                    run.workflow_id, result_type=ErasureOutcome
                )
                proxy.cut()  # the erasure's steps meet the database gone
                await asyncio.sleep(4)
                assert (await handle.describe()).close_time is None
                proxy.restore()
                outcome: ErasureOutcome = await asyncio.wait_for(handle.result(), timeout=90)
        finally:
            engine.dispose()

    assert proxy.resets > 0 or await _steps_retried(handle) > 0
    assert outcome.found and outcome.assets_deleted == 3
    assert cdn.assets_under(book_asset_prefix(book_id)) == []
    assert _rows_of(database, book_id) == dict.fromkeys(_rows_of(database, book_id), 0)


@pytest.mark.process
async def test_a_worker_killed_mid_erasure_another_finishes_it(
    temporal_client: Client,
    database: Database,
    fakes: Fakes,
    provider_settings: SettingsFactory,
    tmp_path: Path,
) -> None:
    """kill -9 the replica whose erasure is inside its Admin API delete: the other replica
    takes the step over after its heartbeat timeout and deletes everything."""
    settings = provider_settings()
    book_id, _ = await _book_from_photos(settings, database, tmp_path, 3)
    fakes.cloudinary.fail_next_admin(1, CloudFault.hang(60))
    with worker_processes(settings, fakes, 2, tmp_path) as replicas:
        await wait_until_ready(replicas)
        run = await _erasures(temporal_client, settings, database).erase_book(book_id)
        handle = temporal_client.get_workflow_handle(run.workflow_id, result_type=ErasureOutcome)

        async def deleting_on() -> str:
            while True:
                pending = (await handle.describe()).raw_description.pending_activities
                for activity in pending:
                    if activity.activity_type.name != "erase_assets":
                        continue
                    if activity.last_worker_identity:
                        return activity.last_worker_identity
                await asyncio.sleep(0.1)

        identity = await asyncio.wait_for(deleting_on(), timeout=30)
        victim = next(r for r in replicas if r.identity == identity)
        victim.signal(signal.SIGKILL)
        await victim.exit_code(within=5)
        outcome: ErasureOutcome = await asyncio.wait_for(handle.result(), timeout=60)

    assert outcome.found and outcome.assets_deleted == 3
    assert fakes.cloudinary.assets_under(book_asset_prefix(book_id)) == []
    assert _rows_of(database, book_id)["books"] == 0


# ----- the command and the HTTP API -----


def _cli_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(SECRET_PREFIXES)}
    env.update(
        DATABASE_URL=settings.resolved_database_url,
        STORAGE_DIR=str(settings.storage_dir),
        TEMPORAL_ADDRESS=settings.temporal_address,
        TEMPORAL_TASK_QUEUE=settings.temporal_task_queue,
        NO_PROXY="127.0.0.1,localhost",
        COLUMNS="400",
    )
    return env


async def _storywink(settings: Settings, tmp_path: Path, *args: str) -> CompletedProcess[str]:
    return await asyncio.to_thread(
        forked_cli.run, args, cwd=tmp_path, env=_cli_env(settings), timeout=90
    )


async def test_storywink_book_delete_erases_a_book_then_every_book_of_a_parent(
    temporal_client: Client, database: Database, settings: Settings, tmp_path: Path
) -> None:
    first, _ = await _book_from_photos(settings, database, tmp_path, 2, user_id="parent-cli")
    second, _ = await _book_from_photos(settings, database, tmp_path, 1, user_id="parent-cli")
    kept, _ = await _book_from_photos(settings, database, tmp_path, 1, user_id="parent-other")
    storage = settings.storage_dir / "storywink"
    async with running_worker(temporal_client, settings, database):
        neither = await _storywink(settings, tmp_path, "book", "delete")
        one = await _storywink(settings, tmp_path, "book", "delete", first)
        status = await _storywink(settings, tmp_path, "status", first)
        again = await _storywink(settings, tmp_path, "book", "delete", first)
        every = await _storywink(settings, tmp_path, "book", "delete", "--user", "parent-cli")
        none_left = await _storywink(settings, tmp_path, "book", "delete", "--user", "parent-cli")

    assert neither.returncode == 2 and "--user" in neither.stderr
    assert one.returncode == 0, one.stderr
    assert one.stdout.strip() == (
        f"book {first} erased: 2 assets, 2 pages, 0 notifications deleted"
    )
    assert status.returncode == 1 and f"book {first} not found" in status.stderr
    assert again.returncode == 1 and "not found" in again.stderr
    assert every.returncode == 0, every.stderr
    assert every.stdout.splitlines() == [
        f"book {second} erased: 1 assets, 1 pages, 0 notifications deleted"
    ]
    assert none_left.stdout.strip() == "parent parent-cli has no books"
    assert sorted(p.name for p in storage.iterdir()) == [kept]
    assert _rows_of(database, kept)["pages"] == 1


async def test_delete_books_id_erases_the_owners_book_and_only_theirs(
    temporal_client: Client,
    database: Database,
    fakes: Fakes,
    provider_settings: SettingsFactory,
    tmp_path: Path,
) -> None:
    settings = provider_settings(**WEB_SETTINGS)
    book_id, _ = await _book_from_photos(settings, database, tmp_path, 2, user_id="parent-web")
    async with (
        running_app(settings) as web_url,
        running_worker(temporal_client, settings, database),
        api_client(web_url, "parent-web") as owner,
        api_client(web_url, "someone-else") as stranger,
    ):
        refused = await stranger.delete(f"/books/{book_id}")
        accepted = await owner.delete(f"/books/{book_id}")
        joined = await owner.delete(f"/books/{book_id}")
        await _erasures(temporal_client, settings, database).wait_for_erasure(book_id)
        gone = await owner.get(f"/books/{book_id}")

    assert refused.status_code == 404  # another parent's book is a book that does not exist
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["workflow_id"] == erasure_workflow_id(book_id)
    assert joined.status_code in (202, 404)  # the same run, or already erased
    if joined.status_code == 202:
        assert joined.json()["run_id"] == accepted.json()["run_id"]
    assert gone.status_code == 404
    assert fakes.cloudinary.assets_under(book_asset_prefix(book_id)) == []
