"""Private images (docs/privacy.md): photos and pictures are private assets under names
that give nothing away, the database keeps their ids, and whoever shows or fetches one gets
a signed URL that expires. Through the real `cloudinary` SDK against the fake Cloudinary,
a real worker on the dev server, the web backend on a port."""

from __future__ import annotations

import asyncio
import base64
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client

from storywink import contract
from storywink.book.inputs import NewBook
from storywink.book.privatize import privatize
from storywink.book.records import claim, get_book
from storywink.book.upload import create_book_from_photos
from storywink.contract import BookStatus, ModerationStatus
from storywink.db.connection import Database
from storywink.demo.sample_book import sample_photo_bytes, write_sample_photos
from storywink.illustration import records as books
from storywink.illustration.client import IllustrationClient
from storywink.illustration.records import ILLUSTRATION_RUN
from storywink.pictures import PictureSigner, picture_signer
from storywink.providers.cloudinary_store import CloudinaryStore
from storywink.providers.fetch import ImageFetcher
from storywink.story.client import StoryClient
from tests.support.fakes.cloudinary_server import FakeCloudinaryServer
from tests.support.helpers import create_book, load_book, picture_id, running_worker, start
from tests.support.provider_fakes import Fakes, SettingsFactory
from tests.support.web_app import WEB_SETTINGS, api_client, photo_parts, running_app

IMAGE = sample_photo_bytes(1, "PNG")
HASHED_NAME = re.compile(r"^storywink/(?P<book>[0-9a-f]{32})/(originals|generated)/[0-9a-f]{32}$")


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


def _readable(history_json: str) -> str:
    """A history's JSON with every payload (base64 in it) decoded beside it."""
    decoded = [
        base64.b64decode(data).decode("utf-8", "replace")
        for data in re.findall(r'"data": "([A-Za-z0-9+/=]+)"', history_json)
    ]
    return "\n".join([history_json, *decoded])


def _get(url: str) -> httpx.Response:
    with httpx.Client(trust_env=False) as http:
        return http.get(url)


async def _private_book(fakes: Fakes, database: Database, tmp_path: Path, pages: int) -> str:
    """A book created as `storywink book create` creates it, on the fake Cloudinary."""
    return await create_book_from_photos(
        CloudinaryStore(fakes.cloudinary.credentials(), timeout_seconds=5),
        database.sessions,
        NewBook(title="Mia's Day", child_name="Mia", art_style="vignette", user_id="parent-p"),
        write_sample_photos(tmp_path / "photos", pages),
        [f"Page {n} of the story." for n in range(1, pages + 1)],
    )


def _unsigned_urls(cdn: FakeCloudinaryServer, public_id: str) -> list[str]:
    asset = cdn.asset(public_id)
    assert asset is not None
    return [
        cdn.delivery_url(asset),
        cdn.url(f"{cdn.cloud_name}/image/upload/v{asset.version}/{public_id}.{asset.format}"),
        cdn.url(f"{cdn.cloud_name}/image/authenticated/{public_id}"),
    ]


@pytest.mark.each_database
async def test_a_private_book_is_drawn_from_signed_urls_and_shown_by_urls_that_expire(
    temporal_client: Client,
    database: Database,
    fakes: Fakes,
    provider_settings: SettingsFactory,
    tmp_path: Path,
) -> None:
    settings = provider_settings()
    cdn = fakes.cloudinary
    book_id = await _private_book(fakes, database, tmp_path, 3)

    book, pages, _ = load_book(database, book_id)
    assert book.asset_salt
    originals = [page.original_asset_id for page in pages]
    assert all(o and HASHED_NAME.match(o) and f"/{book_id}/originals/" in o for o in originals)
    assert [page.original_image_url for page in pages] == [None] * 3
    for original in originals:
        assert original is not None
        asset = cdn.asset(original)
        assert asset is not None and asset.delivery_type == "authenticated"
        assert [_get(url).status_code for url in _unsigned_urls(cdn, original)] == [401, 404, 401]

    async with running_worker(temporal_client, settings, database):
        handle = await start(temporal_client, settings, book_id)
        outcome = await handle.result()
        history = _readable((await handle.fetch_history()).to_json())

    assert outcome.status is BookStatus.COMPLETED
    # The model's photo came through a URL the activity signed when it fetched it.
    assert sorted(public_id for public_id, status in cdn.downloads if status == 200) == sorted(
        o for o in originals if o
    )
    assert len(fakes.gemini.requests) == 3
    # The history holds asset ids, never a signed URL or what signs one.
    assert originals[0] is not None and originals[0] in history
    for secret_bit in ("signature", "expires_at", "api_key", cdn.api_secret, "/image/download"):
        assert secret_bit not in history, secret_bit

    _, pages, _ = load_book(database, book_id)
    pictures = [page.generated_asset_id for page in pages]
    assert pictures == [picture_id(database, book_id, n) for n in (1, 2, 3)]
    assert all(p and HASHED_NAME.match(p) and f"/{book_id}/generated/" in p for p in pictures)
    assert all(page.moderation_status is ModerationStatus.OK for page in pages)
    assert [page.generated_image_url for page in pages] == [None] * 3
    picture = pictures[0]
    assert picture is not None
    assert [_get(url).status_code for url in _unsigned_urls(cdn, picture)] == [401, 404, 401]

    # What the client shows: signed URLs, each serving its image until the expiry.
    client = IllustrationClient(
        temporal_client,
        database.sessions,
        settings.temporal_task_queue,
        pictures=picture_signer(settings),
    )
    shown = await client.book_pictures(book_id)
    expected_expiry = datetime.now(UTC) + timedelta(seconds=settings.image_url_ttl_seconds)
    assert abs((shown.expires_at - expected_expiry).total_seconds()) < 5
    for page, view in zip(pages, shown.pages, strict=True):
        assert view.photo_url and view.picture_url
        asset = cdn.asset(page.generated_asset_id or "")
        assert asset is not None
        answer = _get(view.picture_url)
        assert (answer.status_code, answer.content) == (200, asset.data)
        assert _get(view.photo_url).status_code == 200
        assert cdn.api_secret not in view.picture_url

    brief_signer = PictureSigner(
        CloudinaryStore(fakes.cloudinary.credentials(), 5), timedelta(seconds=3)
    )
    expires_at = brief_signer.expiry()
    brief = brief_signer.url(picture, expires_at)
    assert brief is not None and _get(brief).status_code == 200
    await asyncio.sleep(max(0.0, expires_at.timestamp() - time.time()) + 0.2)
    assert _get(brief).status_code == 401  # expired


async def test_the_story_model_gets_a_private_photo_through_a_url_signed_when_fetched(
    temporal_client: Client,
    database: Database,
    fakes: Fakes,
    provider_settings: SettingsFactory,
    tmp_path: Path,
) -> None:
    settings = provider_settings()
    book_id = await create_book_from_photos(
        CloudinaryStore(fakes.cloudinary.credentials(), timeout_seconds=5),
        database.sessions,
        NewBook(title="Mia's Day", child_name="Mia", art_style="vignette", user_id="parent-s"),
        write_sample_photos(tmp_path / "photos", 2),
        None,  # a DRAFT: the text model writes its story from the photos
    )
    _, pages, _ = load_book(database, book_id)
    stories = StoryClient(temporal_client, database.sessions, settings.temporal_task_queue)
    async with running_worker(temporal_client, settings, database):
        run = await stories.start_story(book_id)
        outcome = await asyncio.wait_for(stories.wait_for_story(book_id), 60)
        history = _readable(
            (await temporal_client.get_workflow_handle(run.workflow_id).fetch_history()).to_json()
        )

    assert outcome.status is BookStatus.STORY_READY
    fetched = [public_id for public_id, status in fakes.cloudinary.downloads if status == 200]
    assert sorted(fetched) == sorted(page.original_asset_id or "" for page in pages)
    assert len(fakes.gemini.requests[-1].inline_images) == 2
    for secret_bit in ("signature", "expires_at", "/image/download"):
        assert secret_bit not in history, secret_bit


async def test_a_book_stored_before_private_images_keeps_its_public_urls(
    temporal_client: Client, database: Database, fakes: Fakes, provider_settings: SettingsFactory
) -> None:
    """An old page's public photo and picture are shown by their URLs, still readable,
    until an operator moves them (`storywink images privatize`)."""
    settings = provider_settings()
    cdn = fakes.cloudinary
    photo = cdn.put("storywink/old/originals/page_1", IMAGE, delivery_type="upload")
    picture = cdn.put("storywink/old/generated/page_1", IMAGE, delivery_type="upload")
    book_id = create_book(database, [cdn.delivery_url(photo)])
    _, (page,), _ = load_book(database, book_id)
    with database.sessions() as session:
        claim(session, ILLUSTRATION_RUN, book_id, "wf", "run-old")
        books.record_page(
            session, page.id, "run-old", ModerationStatus.OK, image_ref=cdn.delivery_url(picture)
        )
    client = IllustrationClient(
        temporal_client, database.sessions, "q", pictures=picture_signer(settings)
    )

    [shown] = (await client.book_pictures(book_id)).pages

    assert (shown.photo_url, shown.picture_url) == (
        cdn.delivery_url(photo),
        cdn.delivery_url(picture),
    )
    assert shown.picture_url is not None and _get(shown.picture_url).content == IMAGE


async def test_the_web_api_shows_signed_urls_and_its_route_redirects_to_a_fresh_one(
    temporal_client: Client,
    database: Database,
    provider_settings: SettingsFactory,
    fakes: Fakes,
) -> None:
    settings = provider_settings(**WEB_SETTINGS)
    async with running_app(settings) as url, api_client(url, "parent-w") as http:
        created = await http.post(
            "/books",
            files=photo_parts(2),
            data={"title": "Private", "child_name": "Mia", "style": "vignette"},
        )
        assert created.status_code == 201, created.text
        book = created.json()
        expires_at = datetime.fromisoformat(book["urls_expire_at"])
        assert 3590 < (expires_at - datetime.now(UTC)).total_seconds() <= 3600
        book_id = book["id"]
        _, pages, _ = load_book(database, book_id)
        for shown, page in zip(book["pages"], pages, strict=True):
            assert page.original_asset_id and HASHED_NAME.match(page.original_asset_id)
            answer = _get(shown["photo_url"])
            asset = fakes.cloudinary.asset(page.original_asset_id)
            assert asset is not None and (answer.status_code, answer.content) == (200, asset.data)
            assert "expires_at=" in shown["photo_url"]

        route = f"/books/{book_id}/pages/1/photo"
        redirect = await http.get(route, follow_redirects=False)
        assert redirect.status_code == 307
        assert redirect.headers["cache-control"] == "private, no-store"
        assert _get(redirect.headers["location"]).status_code == 200

        async with api_client(url, "another-parent") as stranger:
            assert (await stranger.get(route, follow_redirects=False)).status_code == 404
            assert (await stranger.get(f"/books/{book_id}")).status_code == 404
        async with httpx.AsyncClient(base_url=url, trust_env=False) as anonymous:
            assert (await anonymous.get(route)).status_code == 401


async def test_with_local_storage_images_are_served_only_through_the_web_backend(
    web_settings: object, web_url: str, database: Database
) -> None:
    async with api_client(web_url, "parent-l") as http:
        created = await http.post(
            "/books",
            files=photo_parts(1),
            data={"title": "Local", "child_name": "Mia", "style": "vignette"},
        )
        book = created.json()
        [page] = book["pages"]
        route = f"/books/{book['id']}/pages/1/photo"
        assert page["photo_url"].startswith(f"{route}?v=")  # no file URL, no path
        assert book["urls_expire_at"] is None
        photo = await http.get(route)
        assert photo.status_code == 200 and photo.headers["cache-control"] == "private, no-store"
    async with api_client(web_url, "another-parent") as stranger:
        assert (await stranger.get(route)).status_code == 404
    async with httpx.AsyncClient(base_url=web_url, trust_env=False) as anonymous:
        assert (await anonymous.get(route)).status_code == 401
    _, (stored,), _ = load_book(database, book["id"])
    assert stored.original_asset_id == contract.original_public_id(
        book["id"], 1, load_book(database, book["id"])[0].asset_salt
    )


async def test_privatize_moves_a_public_book_to_private_assets_and_deletes_the_public_ones(
    database: Database, fakes: Fakes
) -> None:
    cdn = fakes.cloudinary
    store = CloudinaryStore(cdn.credentials(), timeout_seconds=5)
    photo = cdn.put("storywink/PLACEHOLDER/originals/page_1", IMAGE, delivery_type="upload")
    book_id = create_book(database, [cdn.delivery_url(photo)], status=BookStatus.COMPLETED)
    busy_id = create_book(database, [cdn.delivery_url(photo)], status=BookStatus.ILLUSTRATING)
    # As a release before private images stored them: under the book's readable names.
    photo = cdn.put(f"storywink/{book_id}/originals/page_1", IMAGE, delivery_type="upload")
    drawn = sample_photo_bytes(2, "PNG")
    picture = cdn.put(f"storywink/{book_id}/generated/page_1", drawn, delivery_type="upload")
    with database.sessions() as session:
        old = get_book(session, book_id)
        old.asset_salt = None  # created before 0008 gave every book one
        old.pages[0].original_image_url = cdn.delivery_url(photo)
        old.pages[0].generated_image_url = cdn.delivery_url(picture)
        old.pages[0].moderation_status = ModerationStatus.OK
        session.commit()
    public_urls = [cdn.delivery_url(photo), cdn.delivery_url(picture)]
    async with ImageFetcher(timeout_seconds=5, max_bytes=10_000_000, allow_private=True) as fetch:
        dry = await privatize(database.sessions, store, fetch, [book_id, busy_id], dry_run=True)
        done = await privatize(database.sessions, store, fetch, [book_id, busy_id])
        again = await privatize(database.sessions, store, fetch, [book_id])

    assert [(i.book_id, i.kind) for i in dry.moved if i.book_id == book_id] == [
        (book_id, "photo"),
        (book_id, "picture"),
    ]
    assert done.busy_books == [busy_id] and done.left_public == []
    assert again.moved == [] and again.busy_books == []
    book, (page,), _ = load_book(database, book_id)
    assert book.asset_salt is not None
    assert (page.original_image_url, page.generated_image_url) == (None, None)
    assert page.original_asset_id == contract.original_public_id(book_id, 1, book.asset_salt)
    assert page.generated_asset_id == picture_id(database, book_id, 1)
    assert [_get(url).status_code for url in public_urls] == [404, 404]  # deleted
    signer = picture_signer_for(store)
    assert _get(signer.url(page.picture_ref) or "").content == drawn
    assert _get(signer.url(page.photo_ref) or "").content == IMAGE


def picture_signer_for(store: CloudinaryStore) -> PictureSigner:
    return PictureSigner(store, timedelta(minutes=5))
