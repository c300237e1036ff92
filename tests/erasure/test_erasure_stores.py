"""`ImageStore.delete_prefix`: Cloudinary through the real SDK against the fake (both
delivery types, paged deletes, 500 and 429), and local storage (files and sidecars)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from storywink.providers.base import GeneratedImage, PermanentError, TransientError
from storywink.providers.cloudinary_store import CloudinaryStore
from storywink.providers.local_storage import LocalImageStore
from tests.support.fakes.cloudinary_server import CloudFault, FakeCloudinaryServer

BOOK = "storywink/book-1/"


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 40, 90)).save(out, format="PNG")
    return out.getvalue()


PNG = _png()
# Everything a book leaves: originals, every version of every picture, both delivery types.
BOOK_ASSETS = [
    ("upload", "storywink/book-1/originals/page_1"),
    ("upload", "storywink/book-1/originals/page_2"),
    ("upload", "storywink/book-1/generated/page_1"),
    ("upload", "storywink/book-1/generated/page_1_v1"),
    ("upload", "storywink/book-1/generated/page_1_v2"),
    ("authenticated", "storywink/book-1/originals/page_1"),
    ("authenticated", "storywink/book-1/generated/page_2_v3"),
]
# Another book's, one of whose id starts like this one's.
OTHERS = [
    ("upload", "storywink/book-10/originals/page_1"),
    ("authenticated", "storywink/book-1x/generated/page_1"),
    ("upload", "storywink/styles/abc/vignette/reference-1"),
]


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def cdn() -> Iterator[FakeCloudinaryServer]:
    with FakeCloudinaryServer() as server:
        for delivery_type, public_id in BOOK_ASSETS + OTHERS:
            server.put(public_id, PNG, delivery_type=delivery_type)
        yield server


@pytest.fixture
def store(cdn: FakeCloudinaryServer) -> CloudinaryStore:
    return CloudinaryStore(cdn.credentials(), timeout_seconds=2)


async def test_cloudinary_deletes_every_asset_of_the_folder_of_both_delivery_types(
    cdn: FakeCloudinaryServer, store: CloudinaryStore
) -> None:
    deleted = await store.delete_prefix(BOOK)

    assert deleted == len(BOOK_ASSETS)
    assert cdn.assets_under(BOOK) == []
    assert sorted(cdn.deleted) == sorted(BOOK_ASSETS)
    assert sorted(cdn.assets_under("storywink/")) == sorted(OTHERS)  # nobody else's
    assert await store.delete_prefix(BOOK) == 0  # a repeat deletes nothing more


async def test_cloudinary_follows_partial_deletes_to_the_end(
    cdn: FakeCloudinaryServer, store: CloudinaryStore
) -> None:
    cdn.delete_limit = 2  # as Cloudinary's 1000 a call, on a small book

    assert await store.delete_prefix(BOOK) == len(BOOK_ASSETS)

    assert cdn.assets_under(BOOK) == []
    # upload: 5 assets in 3 deletes, 1 listing; authenticated: 1 delete, 1 listing.
    assert cdn.admin_calls == 3 + 1 + 1 + 1


@pytest.mark.parametrize(
    "fault", [CloudFault.server_error(500), CloudFault.rate_limited(429)], ids=["500", "429"]
)
async def test_cloudinary_500_or_429_is_transient_and_a_retry_finishes(
    cdn: FakeCloudinaryServer, store: CloudinaryStore, fault: CloudFault
) -> None:
    cdn.delete_limit = 2
    cdn.put("storywink/book-1/generated/page_9", PNG)
    cdn.fail_next_admin(1, fault)

    with pytest.raises(TransientError):
        await store.delete_prefix(BOOK)
    # What the first pass deleted is gone; the retry (the activity's) deletes the rest.
    assert await store.delete_prefix(BOOK) == len(BOOK_ASSETS) + 1
    assert cdn.assets_under(BOOK) == []


async def test_cloudinary_refuses_a_prefix_that_is_not_a_folder(store: CloudinaryStore) -> None:
    with pytest.raises(PermanentError):
        await store.delete_prefix("storywink/book-1")


async def test_local_storage_deletes_the_folder_pictures_sidecars_and_leftovers(
    tmp_path: Path,
) -> None:
    store = LocalImageStore(tmp_path)
    image = GeneratedImage(PNG, "image/png")
    for _, public_id in BOOK_ASSETS[:5] + OTHERS[:1]:
        await store.store(image, public_id, [], {"book_id": "book-1"})
    (tmp_path / "storywink/book-1/generated/.page_3.png.tmp").write_bytes(b"half")  # a crash
    assert (tmp_path / "storywink/book-1/generated/page_1.png.json").exists()

    assert await store.delete_prefix(BOOK) == 5

    assert not (tmp_path / "storywink/book-1").exists()
    assert (tmp_path / "storywink/book-10/originals/page_1.png").exists()
    assert await store.delete_prefix(BOOK) == 0
    with pytest.raises(PermanentError):
        await store.delete_prefix("storywink/../etc/")
