"""CloudinaryStore against the fake Cloudinary, through the real `cloudinary` SDK."""

from __future__ import annotations

import asyncio
import io
import re
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, quote, urlsplit

import cloudinary
import httpx
import pytest
from PIL import Image

from storywink.config import CloudinaryCredentials
from storywink.providers.base import (
    GeneratedImage,
    PermanentError,
    ProviderError,
    StoredImage,
    TransientError,
)
from storywink.providers.cloudinary_store import CloudinaryStore, classify_error
from tests.support.fakes.cloudinary_server import CloudFault, FakeCloudinaryServer, parse_context

PUBLIC_ID = "storywink/book-1/generated/page_1"
TAGS = ["book:book-1", "page:1", "style:vignette"]
CONTEXT = {"book_id": "book-1", "page": "1", "style": "vignette"}
WRONG_SECRET = "wrong-secret-LEAK-CANARY-9f8e7d"
TIMEOUT_SECONDS = 1.0
HEX_DIGEST = re.compile(r"[0-9a-f]{40}")


def _png(color: tuple[int, int, int]) -> GeneratedImage:
    out = io.BytesIO()
    Image.new("RGB", (32, 32), color).save(out, format="PNG")
    return GeneratedImage(out.getvalue(), "image/png")


IMAGE = _png((10, 120, 200))


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def cdn() -> Iterator[FakeCloudinaryServer]:
    with FakeCloudinaryServer() as server:
        yield server


@pytest.fixture
def store(cdn: FakeCloudinaryServer) -> CloudinaryStore:
    return CloudinaryStore(cdn.credentials(), timeout_seconds=TIMEOUT_SECONDS)


async def _store_failure(store: CloudinaryStore, image: GeneratedImage = IMAGE) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await store.store(image, PUBLIC_ID, TAGS, CONTEXT)
    return caught.value


async def _find_failure(store: CloudinaryStore) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await store.find(PUBLIC_ID)
    return caught.value


def _in(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def _status(url: str) -> int:
    with httpx.Client(trust_env=False) as http:
        return http.get(url).status_code


def _download(url: str) -> bytes:
    with httpx.Client(trust_env=False) as http:
        response = http.get(url)
    response.raise_for_status()
    return response.content


# ----- storing and finding -----


async def test_store_uploads_a_private_asset_under_the_public_id_with_tags_and_context(
    store: CloudinaryStore, cdn: FakeCloudinaryServer
) -> None:
    stored = await store.store(IMAGE, PUBLIC_ID, TAGS, CONTEXT)

    asset = cdn.asset(PUBLIC_ID)
    assert asset is not None and asset.delivery_type == "authenticated"
    assert cdn.asset(PUBLIC_ID, "upload") is None
    assert stored == StoredImage(url="", public_id=PUBLIC_ID, context=CONTEXT, private=True)
    assert asset.tags == TAGS
    assert asset.context == CONTEXT
    [upload] = cdn.uploads
    assert upload.status == 200
    assert upload.fields["type"] == "authenticated"
    assert upload.fields["overwrite"] == "1"
    assert upload.fields["invalidate"] == "1"


async def test_store_again_overwrites(store: CloudinaryStore, cdn: FakeCloudinaryServer) -> None:
    await store.store(IMAGE, PUBLIC_ID, TAGS, CONTEXT)
    second_image = _png((250, 40, 40))

    await store.store(second_image, PUBLIC_ID, TAGS, {**CONTEXT, "attempt": "2"})

    assert cdn.uploads_of(PUBLIC_ID) == 2
    assert _download(store.signed_url(PUBLIC_ID, _in(60))) == second_image.data
    asset = cdn.asset(PUBLIC_ID)
    assert asset is not None
    assert asset.context["attempt"] == "2"


async def test_find_returns_the_stored_context(store: CloudinaryStore) -> None:
    context = {**CONTEXT, "note": "a=b|c"}  # the SDK escapes = and | in values
    stored = await store.store(IMAGE, PUBLIC_ID, TAGS, context)

    found = await store.find(PUBLIC_ID)

    assert found == StoredImage(url=stored.url, public_id=PUBLIC_ID, context=context)


async def test_a_private_lookup_does_not_find_a_public_asset_and_a_public_one_does(
    store: CloudinaryStore, cdn: FakeCloudinaryServer
) -> None:
    """A picture a release before private images stored (`upload`) is no private asset;
    the page activity looks for it with `private=False` (its readable name says so)."""
    legacy = cdn.put(PUBLIC_ID, IMAGE.data, context=CONTEXT, delivery_type="upload")

    assert await store.find(PUBLIC_ID) is None
    found = await store.find(PUBLIC_ID, private=False)

    assert found == StoredImage(
        url=cdn.delivery_url(legacy), public_id=PUBLIC_ID, context=CONTEXT, private=False
    )
    assert _download(found.url) == IMAGE.data  # still readable, as before


async def test_a_public_store_is_served_to_anyone(
    store: CloudinaryStore, cdn: FakeCloudinaryServer
) -> None:
    """Only the styles' reference images (our own art) are stored public."""
    stored = await store.store(IMAGE, "styles/abc/crayon/reference-1", [], {}, private=False)

    asset = cdn.asset("styles/abc/crayon/reference-1", "upload")
    assert asset is not None and stored.url == cdn.delivery_url(asset)
    assert _download(stored.url) == IMAGE.data


# ----- who can read a private asset -----


async def test_a_private_asset_is_refused_at_its_unsigned_delivery_url(
    store: CloudinaryStore, cdn: FakeCloudinaryServer
) -> None:
    await store.store(IMAGE, PUBLIC_ID, TAGS, CONTEXT)
    asset = cdn.asset(PUBLIC_ID)
    assert asset is not None

    for url in (cdn.delivery_url(asset), cdn.url(f"{cdn.cloud_name}/image/upload/{PUBLIC_ID}")):
        assert _status(url) in (401, 404), url


async def test_a_signed_url_serves_the_private_asset_until_it_expires(
    store: CloudinaryStore, cdn: FakeCloudinaryServer
) -> None:
    await store.store(IMAGE, PUBLIC_ID, TAGS, CONTEXT)
    expires_at = _in(2)

    url = store.signed_url(PUBLIC_ID, expires_at)

    assert _download(url) == IMAGE.data
    assert "expires_at=" in url and cdn.api_secret not in url
    await asyncio.sleep(max(0.0, expires_at.timestamp() - time.time()) + 0.1)
    assert _status(url) == 401
    assert [status for _, status in cdn.downloads] == [200, 401]


async def test_an_expired_signed_url_is_refused(store: CloudinaryStore) -> None:
    await store.store(IMAGE, PUBLIC_ID, TAGS, CONTEXT)

    assert _status(store.signed_url(PUBLIC_ID, _in(-1))) == 401


async def test_a_signed_url_whose_expiry_or_asset_is_changed_is_refused(
    store: CloudinaryStore,
) -> None:
    """The expiry and the asset are signed: a URL cannot be stretched or pointed at the
    book's other pages."""
    await store.store(IMAGE, PUBLIC_ID, TAGS, CONTEXT)
    await store.store(IMAGE, "storywink/book-1/generated/other", TAGS, CONTEXT)
    url = store.signed_url(PUBLIC_ID, _in(60))
    query = parse_qs(urlsplit(url).query)
    later = str(int(query["expires_at"][0]) + 3600)

    stretched = url.replace(f"expires_at={query['expires_at'][0]}", f"expires_at={later}")
    elsewhere = url.replace(
        quote(PUBLIC_ID, safe=""), quote("storywink/book-1/generated/other", safe="")
    )

    assert stretched != url and elsewhere != url
    assert _status(stretched) == 401
    assert _status(elsewhere) == 401
    assert (
        _status(
            store.signed_url(
                PUBLIC_ID,
                _in(60),
            )
        )
        == 200
    )


async def test_a_url_signed_with_another_secret_is_refused(cdn: FakeCloudinaryServer) -> None:
    store = CloudinaryStore(cdn.credentials(), TIMEOUT_SECONDS)
    await store.store(IMAGE, PUBLIC_ID, TAGS, CONTEXT)
    forger = CloudinaryStore(cdn.credentials(api_secret=WRONG_SECRET), TIMEOUT_SECONDS)

    assert _status(forger.signed_url(PUBLIC_ID, _in(60))) == 401


async def test_find_unknown_is_none(store: CloudinaryStore, cdn: FakeCloudinaryServer) -> None:
    assert await store.find("storywink/nope/generated/page_9") is None
    assert cdn.admin_calls == 1


async def test_global_cloudinary_config_is_untouched(store: CloudinaryStore) -> None:
    before = (cloudinary.config().cloud_name, cloudinary.config().api_secret)

    await store.store(IMAGE, PUBLIC_ID, TAGS, CONTEXT)
    await store.find(PUBLIC_ID)

    assert (cloudinary.config().cloud_name, cloudinary.config().api_secret) == before


# ----- permanent failures -----


async def test_bad_secret_is_rejected_by_signature_and_permanent(
    cdn: FakeCloudinaryServer,
) -> None:
    store = CloudinaryStore(cdn.credentials(api_secret=WRONG_SECRET), TIMEOUT_SECONDS)

    error = await _store_failure(store)

    assert isinstance(error, PermanentError)
    assert error.reason.startswith("unauthorized: Invalid Signature")
    assert cdn.uploads[0].status == 401
    assert cdn.uploads_of(PUBLIC_ID) == 0


async def test_unknown_api_key_is_permanent(cdn: FakeCloudinaryServer) -> None:
    store = CloudinaryStore(cdn.credentials(api_key="999"), TIMEOUT_SECONDS)

    error = await _store_failure(store)

    assert isinstance(error, PermanentError)
    assert error.reason == "unauthorized: Unknown API key 999"


async def test_bad_secret_on_find_is_permanent(cdn: FakeCloudinaryServer) -> None:
    store = CloudinaryStore(cdn.credentials(api_secret=WRONG_SECRET), TIMEOUT_SECONDS)

    error = await _find_failure(store)

    assert isinstance(error, PermanentError)
    assert error.reason.startswith("unauthorized: ")


async def test_invalid_image_is_a_permanent_bad_request(store: CloudinaryStore) -> None:
    error = await _store_failure(store, GeneratedImage(b"not a picture", "image/png"))

    assert isinstance(error, PermanentError)
    assert error.reason == "bad request: Invalid image file"


# ----- transient failures -----


@pytest.mark.parametrize(
    ("fault", "prefix"),
    [
        (CloudFault.server_error(500), "server error: General Error"),
        (CloudFault.server_error(503), "server error: General Error"),
        (CloudFault.server_error(502, html=True), "HTTP 502: "),
        (CloudFault.rate_limited(420), "rate limited: Rate Limit Exceeded"),
        (CloudFault.rate_limited(429), "rate limited: Rate Limit Exceeded"),
    ],
)
async def test_outages_and_rate_limits_are_transient(
    store: CloudinaryStore, cdn: FakeCloudinaryServer, fault: CloudFault, prefix: str
) -> None:
    cdn.fail_next_uploads(1, fault)

    error = await _store_failure(store)

    assert isinstance(error, TransientError)
    assert error.reason.startswith(prefix)
    assert len(error.reason) <= 200
    assert cdn.upload_attempts == 1
    assert await store.store(IMAGE, PUBLIC_ID, TAGS, CONTEXT)  # the next try goes through


async def test_upload_hang_is_a_timeout_and_the_upload_still_lands(
    cdn: FakeCloudinaryServer,
) -> None:
    store = CloudinaryStore(cdn.credentials(), timeout_seconds=0.5)
    cdn.fail_next_uploads(1, CloudFault.hang(1.0))
    started = time.monotonic()

    error = await _store_failure(store)

    assert isinstance(error, TransientError)
    assert error.reason == "timeout"
    assert time.monotonic() - started < 1.0
    for _ in range(40):  # the fake finishes the upload once its hang is over
        if cdn.asset(PUBLIC_ID) is not None:
            break
        await asyncio.sleep(0.05)
    found = await store.find(PUBLIC_ID)  # what a retry looks for before paying again
    assert found is not None
    assert found.context == CONTEXT


async def test_connection_reset_is_transient(
    store: CloudinaryStore, cdn: FakeCloudinaryServer
) -> None:
    cdn.fail_next_uploads(1, CloudFault.reset())

    error = await _store_failure(store)

    assert isinstance(error, TransientError)
    assert error.reason == "connection error: Remote end closed connection without response"
    assert cdn.upload_attempts == 1  # urllib3 does not retry a POST after it was sent


async def test_connection_refused_is_transient(cdn: FakeCloudinaryServer) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = cdn.cloudinary_url().split("?")[0] + f"?upload_prefix=http://127.0.0.1:{port}"
    store = CloudinaryStore(CloudinaryCredentials(url), TIMEOUT_SECONDS)

    error = await _store_failure(store)

    assert isinstance(error, TransientError)
    assert error.reason.startswith("connection error: ")


@pytest.mark.parametrize("fault", [CloudFault.server_error(500), CloudFault.rate_limited(420)])
async def test_find_failures_are_transient(
    store: CloudinaryStore, cdn: FakeCloudinaryServer, fault: CloudFault
) -> None:
    cdn.fail_next_admin(1, fault)

    error = await _find_failure(store)

    assert isinstance(error, TransientError)


async def test_find_hang_is_a_timeout_after_the_sdk_own_read_retries(
    cdn: FakeCloudinaryServer,
) -> None:
    store = CloudinaryStore(cdn.credentials(), timeout_seconds=0.25)
    cdn.fail_next_admin(4, CloudFault.hang(5.0))

    error = await _find_failure(store)

    assert isinstance(error, TransientError)
    assert error.reason == "timeout"
    # urllib3 (inside the SDK) retries an idempotent GET after a read timeout, 3 times.
    assert cdn.admin_calls == 4


# ----- secrets -----


async def test_secret_and_signatures_never_appear_in_reasons(cdn: FakeCloudinaryServer) -> None:
    good = CloudinaryStore(cdn.credentials(), TIMEOUT_SECONDS)
    bad = CloudinaryStore(cdn.credentials(api_secret=WRONG_SECRET), TIMEOUT_SECONDS)
    secret_echo = f"auth failed for {cdn.api_key}:{cdn.api_secret}"
    cdn.fail_next_uploads(1, CloudFault.unauthorized(secret_echo))
    cdn.fail_next_uploads(1, CloudFault.http(500, f"api_secret={cdn.api_secret}"))
    cdn.fail_next_admin(1, CloudFault.unauthorized(secret_echo))

    reasons = [
        (await _store_failure(good)).reason,
        (await _store_failure(good)).reason,
        (await _find_failure(good)).reason,
        (await _store_failure(bad)).reason,
        (await _find_failure(bad)).reason,
    ]

    for reason in reasons:
        assert cdn.api_secret not in reason
        assert WRONG_SECRET not in reason
        assert "LEAK-CANARY" not in reason
        assert not HEX_DIGEST.search(reason), reason


# ----- error mapping of the SDK's bare exceptions -----


@pytest.mark.parametrize(
    ("exc", "kind", "reason"),
    [
        (Exception("Error 502 - Bad Gateway"), TransientError, "HTTP 502: Bad Gateway"),
        (Exception("Error 404 - Gone"), PermanentError, "HTTP 404: Gone"),
        (Exception("Error 409 - Conflict"), TransientError, "HTTP 409: Conflict"),
        (cloudinary.exceptions.NotFound("nope"), PermanentError, "not found: nope"),
        (
            ValueError("Must supply api_key"),
            PermanentError,
            "bad configuration: Must supply api_key",
        ),
    ],
)
def test_classify_error(exc: Exception, kind: type[ProviderError], reason: str) -> None:
    error = classify_error(exc)

    assert type(error) is kind
    assert error.reason == reason


def test_fake_parses_escaped_context() -> None:
    assert parse_context(r"a=1|b=x\=y\|z|c=") == {"a": "1", "b": "x=y|z", "c": ""}
