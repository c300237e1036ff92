from __future__ import annotations

import asyncio
import io
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from aiohttp import web
from PIL import Image

from storywink.providers.base import PermanentError, TransientError
from storywink.providers.fetch import ImageFetcher, is_public_address, redact_url


def _image_bytes(image_format: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 40, 40)).save(out, format=image_format)
    return out.getvalue()


PNG = _image_bytes("PNG")
JPEG = _image_bytes("JPEG")
MAX_BYTES = 64 * 1024


@pytest.fixture(scope="module", autouse=True)
def _no_proxy_for_local_server() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NO_PROXY", "127.0.0.1,localhost")
        patch.setenv("no_proxy", "127.0.0.1,localhost")
        yield


async def _big_stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "image/png"})
    await response.prepare(request)
    for _ in range(20):
        await response.write(b"\0" * 8192)
    return response


async def _slow(request: web.Request) -> web.Response:
    await asyncio.sleep(2)
    return web.Response(body=PNG, content_type="image/png")


def _app() -> web.Application:
    def body(data: bytes, content_type: str, status: int = 200) -> web.Response:
        return web.Response(body=data, status=status, headers={"Content-Type": content_type})

    async def status(request: web.Request) -> web.Response:
        code = int(request.match_info["code"])
        headers = {"Retry-After": "7"} if code == 429 else {}
        return web.Response(status=code, headers=headers, text="nope")

    routes = {
        "/photo.png": lambda _: body(PNG, "image/png"),
        "/jpeg-labelled-png": lambda _: body(JPEG, "image/png; charset=binary"),
        "/untyped": lambda _: body(PNG, "application/octet-stream"),
        "/page.html": lambda _: body(b"<html>hi</html>", "text/html"),
        "/fake.png": lambda _: body(b"definitely not a png", "image/png"),
        "/declared-big": lambda _: body(b"\0" * (MAX_BYTES + 1), "image/png"),
        "/redirect": lambda _: web.Response(status=302, headers={"Location": "/photo.png"}),
        "/loop": lambda _: web.Response(status=302, headers={"Location": "/loop"}),
    }
    app = web.Application()
    for path, handler in routes.items():

        async def wrapped(request: web.Request, handler: object = handler) -> web.Response:
            return handler(request)  # type: ignore[operator, no-any-return]

        app.router.add_get(path, wrapped)
    app.router.add_get("/status/{code}", status)
    app.router.add_get("/stream-big", _big_stream)
    app.router.add_get("/slow", _slow)
    return app


@pytest_asyncio.fixture(scope="module")
async def server() -> AsyncIterator[str]:
    runner = web.AppRunner(_app(), shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest_asyncio.fixture
async def fetcher(tmp_path: Path) -> AsyncIterator[ImageFetcher]:
    """file:// URLs are allowed under tmp_path (the storage root of these tests)."""
    async with ImageFetcher(
        timeout_seconds=2, max_bytes=MAX_BYTES, allow_private=True, file_root=tmp_path
    ) as fetcher:
        yield fetcher


async def test_fetches_an_image(server: str, fetcher: ImageFetcher) -> None:
    image = await fetcher.fetch(f"{server}/photo.png", "photo")
    assert image.data == PNG
    assert image.mime_type == "image/png"


async def test_mime_type_comes_from_the_bytes(server: str, fetcher: ImageFetcher) -> None:
    image = await fetcher.fetch(f"{server}/jpeg-labelled-png", "photo")
    assert image.mime_type == "image/jpeg"


async def test_untyped_body_is_accepted_when_it_decodes(server: str, fetcher: ImageFetcher) -> None:
    assert (await fetcher.fetch(f"{server}/untyped", "photo")).data == PNG


async def test_follows_redirects(server: str, fetcher: ImageFetcher) -> None:
    assert (await fetcher.fetch(f"{server}/redirect", "photo")).data == PNG


@pytest.mark.parametrize("code", [401, 403, 404, 410, 400])
async def test_client_errors_are_permanent(server: str, fetcher: ImageFetcher, code: int) -> None:
    with pytest.raises(PermanentError) as caught:
        await fetcher.fetch(f"{server}/status/{code}", "style reference")
    assert caught.value.reason == f"style reference {server}/status/{code}: HTTP {code}"


@pytest.mark.parametrize("code", [500, 502, 503, 504, 408, 429])
async def test_server_errors_are_transient(server: str, fetcher: ImageFetcher, code: int) -> None:
    with pytest.raises(TransientError) as caught:
        await fetcher.fetch(f"{server}/status/{code}", "photo")
    assert caught.value.reason == f"photo {server}/status/{code}: HTTP {code}"
    assert caught.value.retry_after == (7.0 if code == 429 else None)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/page.html", "not an image (content-type text/html)"),
        ("/fake.png", "not a decodable image"),
        ("/declared-big", f"larger than {MAX_BYTES} bytes"),
        ("/stream-big", f"larger than {MAX_BYTES} bytes"),
        ("/loop", "more than 5 redirects"),
    ],
)
async def test_bad_bodies_are_permanent(
    server: str, fetcher: ImageFetcher, path: str, message: str
) -> None:
    with pytest.raises(PermanentError, match=r"^photo http://127\.0\.0\.1:") as caught:
        await fetcher.fetch(f"{server}{path}", "photo")
    assert message in caught.value.reason


async def test_timeout_is_transient(server: str) -> None:
    async with ImageFetcher(timeout_seconds=0.3, max_bytes=MAX_BYTES, allow_private=True) as f:
        with pytest.raises(TransientError, match="timed out"):
            await f.fetch(f"{server}/slow", "photo")


async def test_connection_refused_is_transient() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with ImageFetcher(timeout_seconds=2, max_bytes=MAX_BYTES, allow_private=True) as f:
        with pytest.raises(TransientError, match="connection failed"):
            await f.fetch(f"http://127.0.0.1:{port}/photo.png", "photo")


async def test_reason_redacts_credentials_and_query(server: str, fetcher: ImageFetcher) -> None:
    url = server.replace("http://", "http://user:hunter2@") + "/status/404?signature=s3cr3t#frag"
    with pytest.raises(PermanentError) as caught:
        await fetcher.fetch(url, "photo")
    assert caught.value.reason == f"photo {server}/status/404: HTTP 404"


@pytest.mark.parametrize(
    "url",
    [
        "ftp://cdn.example/x.png",
        "data:image/png;base64,AAAA",
        "javascript:alert(1)",
        "cdn.example/x.png",
    ],
)
async def test_unsupported_schemes_are_permanent(fetcher: ImageFetcher, url: str) -> None:
    with pytest.raises(PermanentError, match="unsupported URL scheme"):
        await fetcher.fetch(url, "photo")


@pytest.mark.parametrize("url", ["http://[::1/x.png", "http://a:99999/"])
async def test_malformed_urls_are_permanent(fetcher: ImageFetcher, url: str) -> None:
    with pytest.raises(PermanentError, match="malformed URL"):
        await fetcher.fetch(url, "photo")


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "localhost",
        "169.254.169.254",
        "10.1.2.3",
        "192.168.0.10",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "0.0.0.0",
    ],
)
async def test_private_addresses_are_refused(host: str) -> None:
    async with ImageFetcher(timeout_seconds=2, max_bytes=MAX_BYTES, allow_private=False) as f:
        with pytest.raises(PermanentError, match="refused non-public address"):
            await f.fetch(f"http://{host}/latest/meta-data/photo.png", "photo")


def test_public_address_check() -> None:
    assert is_public_address("93.184.216.34")
    assert is_public_address("2606:2800:220:1:248:1893:25c8:1946")
    for address in ("127.0.0.1", "169.254.169.254", "fd00:ec2::254", "fe80::1%eth0", "224.0.0.1"):
        assert not is_public_address(address)


def test_redact_url() -> None:
    assert redact_url("https://k:s@CDN.example:8443/a/b.png?x=1#f") == (
        "https://cdn.example:8443/a/b.png"
    )
    assert redact_url("http://[::1]:80/p") == "http://[::1]:80/p"


# -- address pinning and redirects, with a fake resolver and a mock transport -------------


def _pinned_fetcher(handler: httpx.MockTransport, addresses: dict[str, list[str]]) -> ImageFetcher:
    async def resolve(host: str, port: int) -> list[str]:
        if host not in addresses:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return addresses[host]

    return ImageFetcher(
        timeout_seconds=2,
        max_bytes=MAX_BYTES,
        client=httpx.AsyncClient(transport=handler),
        resolver=resolve,
    )


async def test_connects_to_the_checked_address_with_the_original_host() -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=PNG, headers={"Content-Type": "image/png"})

    fetcher = _pinned_fetcher(httpx.MockTransport(handle), {"cdn.example": ["93.184.216.34"]})
    image = await fetcher.fetch("https://cdn.example/styles/a.png?sig=1", "style reference")
    assert image.data == PNG
    [request] = seen
    assert request.url.host == "93.184.216.34"
    assert request.url.path == "/styles/a.png"
    assert request.headers["host"] == "cdn.example"
    assert request.extensions["sni_hostname"] == "cdn.example"


async def test_redirect_to_metadata_address_is_refused() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"Location": "http://169.254.169.254/latest/"})

    fetcher = _pinned_fetcher(httpx.MockTransport(handle), {"cdn.example": ["93.184.216.34"]})
    with pytest.raises(PermanentError, match=r"refused non-public address 169\.254\.169\.254"):
        await fetcher.fetch("https://cdn.example/a.png", "photo")


async def test_host_with_any_private_address_is_refused() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        raise AssertionError("must not connect")

    addresses = {"rebind.example": ["93.184.216.34", "127.0.0.1"]}
    fetcher = _pinned_fetcher(httpx.MockTransport(handle), addresses)
    with pytest.raises(PermanentError, match=r"refused non-public address 127\.0\.0\.1$"):
        await fetcher.fetch("https://rebind.example/a.png", "photo")


async def test_unknown_host_is_permanent() -> None:
    fetcher = _pinned_fetcher(httpx.MockTransport(lambda r: httpx.Response(200)), {})
    with pytest.raises(PermanentError, match="no such host"):
        await fetcher.fetch("https://nowhere.example/a.png", "photo")


async def test_shared_client_is_left_open() -> None:
    client = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(200)))
    fetcher = ImageFetcher(timeout_seconds=1, max_bytes=MAX_BYTES, client=client)
    await fetcher.aclose()
    assert not client.is_closed
    await client.aclose()


# -- file:// ------------------------------------------------------------------------------


async def test_reads_local_files_when_allowed(fetcher: ImageFetcher, tmp_path: Path) -> None:
    photo = tmp_path / "my photo.jpg"
    photo.write_bytes(JPEG)
    image = await fetcher.fetch(photo.as_uri(), "photo")
    assert (image.data, image.mime_type) == (JPEG, "image/jpeg")


async def test_file_errors_are_permanent(fetcher: ImageFetcher, tmp_path: Path) -> None:
    with pytest.raises(PermanentError, match="no such file in local storage"):
        await fetcher.fetch((tmp_path / "missing.png").as_uri(), "photo")
    big = tmp_path / "big.png"
    big.write_bytes(b"\0" * (MAX_BYTES + 1))
    with pytest.raises(PermanentError, match="larger than"):
        await fetcher.fetch(big.as_uri(), "photo")
    with pytest.raises(PermanentError, match="local path"):
        await fetcher.fetch("file://server/share/x.png", "photo")


async def test_file_urls_refused_unless_allowed(tmp_path: Path) -> None:
    photo = tmp_path / "p.png"
    photo.write_bytes(PNG)
    async with ImageFetcher(timeout_seconds=1, max_bytes=MAX_BYTES, allow_private=True) as f:
        with pytest.raises(PermanentError, match="unsupported URL scheme 'file'"):
            await f.fetch(photo.as_uri(), "photo")


NO_SUCH_FILE = "no such file in local storage"


async def test_file_outside_the_root_reads_as_missing(tmp_path: Path) -> None:
    root = tmp_path / "storage"
    root.mkdir()
    outside = tmp_path / "secret.png"
    outside.write_bytes(PNG)
    (root / "link.png").symlink_to(outside)
    (root / "linked-dir").symlink_to(tmp_path)
    async with ImageFetcher(timeout_seconds=1, max_bytes=MAX_BYTES, file_root=root) as f:
        for url in (
            outside.as_uri(),
            f"file://{root}/../secret.png",
            (root / "link.png").as_uri(),
            (root / "linked-dir" / "secret.png").as_uri(),
            "file:///etc/passwd",
        ):
            with pytest.raises(PermanentError) as refused:
                await f.fetch(url, "photo")
            assert str(refused.value).endswith(f": {NO_SUCH_FILE}"), url
        with pytest.raises(PermanentError) as missing:
            await f.fetch((root / "missing.png").as_uri(), "photo")
        assert str(missing.value).endswith(f": {NO_SUCH_FILE}")


async def test_files_under_a_symlinked_root_are_read(tmp_path: Path) -> None:
    real_root = tmp_path / "real"
    (real_root / "book").mkdir(parents=True)
    (real_root / "book" / "p.png").write_bytes(PNG)
    root = tmp_path / "storage"
    root.symlink_to(real_root)
    async with ImageFetcher(timeout_seconds=1, max_bytes=MAX_BYTES, file_root=root) as f:
        image = await f.fetch((root / "book" / "p.png").as_uri(), "photo")
        again = await f.fetch(f"file://{root}/book/../book/p.png", "photo")
    assert image.data == again.data == PNG
