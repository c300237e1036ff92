"""Fetches a page's photo or a style reference image, safely.

URLs come from users and from configuration, so the fetcher refuses anything that could
reach the worker's own network (SSRF): every address a host resolves to must be public,
each redirect hop is checked again, and the connection is pinned to the address that was
checked so a second DNS answer cannot swap it for a private one. `file://` URLs (local
storage) are read only inside one root directory, after resolving symlinks and `..`; a
path outside it gets the same answer as a missing file, so a URL cannot probe the host's
files. Sizes are capped while streaming, and the bytes must decode as an image.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit
from urllib.request import url2pathname

import httpx

from storywink.images import NotAnImage, image_mime_type
from storywink.providers.base import PermanentError, SourceImage, TransientError
from storywink.providers.tls import verifying_context

Resolver = Callable[[str, int], Awaitable[list[str]]]

MAX_REDIRECTS: Final = 5
_TRANSIENT_STATUSES: Final = frozenset({408, 425, 429})
_REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})
# Served by some stores for any upload; the decode check decides for those.
_UNTYPED: Final = frozenset({"", "application/octet-stream", "binary/octet-stream"})


def redact_url(url: str) -> str:
    """scheme://host[:port]/path of `url`: no userinfo, query or fragment (signed URLs)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<malformed URL>"
    if ":" in host:
        host = f"[{host}]"
    path = parts.path if len(parts.path) <= 200 else parts.path[:200] + "…"
    return f"{parts.scheme}://{host}{port}{path}"


def is_public_address(address: str) -> bool:
    """False for loopback, private, link-local (cloud metadata), reserved and multicast."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    return ip.is_global and not ip.is_multicast


async def resolve_host(host: str, port: int) -> list[str]:
    """Every address `host` resolves to, in the resolver's order of preference."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class ImageFetcher:
    """Fetches images over http(s) (and file:// inside `file_root`, when given) into
    `SourceImage`s.

    A shared `client` must connect directly (no proxy): a proxy would resolve the host
    itself and bypass the address check. Errors are `PermanentError` (bad URL, refused
    address, 401/403/404/410, too large, not an image) or `TransientError` (5xx, 408, 429,
    timeouts, connection errors); each reason names the role and the redacted URL.
    """

    def __init__(
        self,
        *,
        timeout_seconds: float,
        max_bytes: int,
        allow_private: bool = False,
        file_root: Path | None = None,
        client: httpx.AsyncClient | None = None,
        resolver: Resolver | None = None,
    ) -> None:
        self._timeout_seconds = timeout_seconds
        self._max_bytes = max_bytes
        self._allow_private = allow_private
        self._file_root = file_root
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(trust_env=False, verify=verifying_context())
        self._resolve = resolver or resolve_host

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> ImageFetcher:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def fetch(self, url: str, role: str) -> SourceImage:
        """The image at `url`, decoded once to check it is one."""
        where = f"{role} {redact_url(url)}"
        try:
            async with asyncio.timeout(self._timeout_seconds):
                data = await self._fetch_bytes(url, where)
                mime_type = await asyncio.to_thread(image_mime_type, data)
        except TimeoutError:
            raise TransientError(f"{where}: timed out after {self._timeout_seconds:g}s") from None
        except NotAnImage as exc:
            raise PermanentError(f"{where}: {exc}") from None
        return SourceImage(data=data, mime_type=mime_type)

    async def fetch_unchecked(self, url: str, role: str) -> bytes:
        """The bytes at `url`, not decoded: for a caller that decodes them itself (the
        page's photo, which `normalise_photo` decodes and checks)."""
        where = f"{role} {redact_url(url)}"
        try:
            async with asyncio.timeout(self._timeout_seconds):
                return await self._fetch_bytes(url, where)
        except TimeoutError:
            raise TransientError(f"{where}: timed out after {self._timeout_seconds:g}s") from None

    async def _fetch_bytes(self, url: str, where: str) -> bytes:
        try:
            parts = urlsplit(url)
            _ = parts.port  # raises ValueError for a port out of range
        except ValueError:
            raise PermanentError(f"{where}: malformed URL") from None
        scheme = parts.scheme.lower()
        if scheme == "file" and self._file_root is not None:
            return await asyncio.to_thread(self._read_file, url, self._file_root, where)
        if scheme in ("http", "https"):
            return await self._fetch_http(url, where)
        raise PermanentError(f"{where}: unsupported URL scheme {scheme or 'none'!r}")

    # -- file:// -----------------------------------------------------------------------

    def _read_file(self, url: str, root: Path, where: str) -> bytes:
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise PermanentError(f"{where}: file URLs must name a local path")
        not_found = PermanentError(f"{where}: no such file in local storage")
        path = Path(os.path.realpath(url2pathname(parts.path)))
        if not path.is_relative_to(os.path.realpath(root)):
            raise not_found
        try:
            # O_NOFOLLOW: the checked path's last part cannot have become a symlink since.
            with open(path, "rb", opener=_open_no_follow) as handle:
                if os.fstat(handle.fileno()).st_size > self._max_bytes:
                    raise self._too_large(where)
                data = handle.read(self._max_bytes + 1)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise not_found from None
        except PermissionError:
            raise PermanentError(f"{where}: permission denied") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # swapped for a symlink after the check
                raise not_found from None
            raise TransientError(f"{where}: cannot read file ({type(exc).__name__})") from None
        if len(data) > self._max_bytes:
            raise self._too_large(where)
        return data

    # -- http(s) -----------------------------------------------------------------------

    async def _fetch_http(self, url: str, where: str) -> bytes:
        try:
            current = httpx.URL(url)
        except httpx.InvalidURL:
            raise PermanentError(f"{where}: malformed URL") from None
        for _ in range(MAX_REDIRECTS + 1):
            if current.scheme not in ("http", "https") or not current.host:
                raise PermanentError(f"{where}: redirected to an unsupported URL")
            addresses = await self._allowed_addresses(current, where)
            result = await self._get_first_reachable(current, addresses, where)
            if isinstance(result, bytes):
                return result
            current = result
        raise PermanentError(f"{where}: more than {MAX_REDIRECTS} redirects")

    async def _allowed_addresses(self, url: httpx.URL, where: str) -> list[str | None]:
        """The checked addresses to connect to; `[None]` means let httpx resolve."""
        if self._allow_private:
            return [None]
        host = url.raw_host.decode("ascii")
        try:
            ipaddress.ip_address(host)
            addresses = [host]
        except ValueError:
            addresses = await self._resolve_checked(host, url.port or _default_port(url), where)
        refused = [address for address in addresses if not is_public_address(address)]
        if refused:
            raise PermanentError(f"{where}: refused non-public address {refused[0]}")
        return list(addresses)

    async def _resolve_checked(self, host: str, port: int, where: str) -> list[str]:
        try:
            addresses = await self._resolve(host, port)
        except socket.gaierror as exc:
            if exc.errno == socket.EAI_NONAME:
                raise PermanentError(f"{where}: no such host") from None
            raise TransientError(f"{where}: cannot resolve host") from None
        if not addresses:
            raise TransientError(f"{where}: cannot resolve host")
        return addresses

    async def _get_first_reachable(
        self, url: httpx.URL, addresses: list[str | None], where: str
    ) -> bytes | httpx.URL:
        for index, address in enumerate(addresses):
            try:
                return await self._get(url, address, where)
            except httpx.ConnectError:
                if index == len(addresses) - 1:
                    raise TransientError(f"{where}: connection failed") from None
        raise AssertionError("unreachable: addresses is never empty")

    async def _get(self, url: httpx.URL, address: str | None, where: str) -> bytes | httpx.URL:
        """Body bytes, or the next URL on a redirect. Lets `ConnectError` through."""
        request = self._build_request(url, address)
        try:
            response = await self._client.send(request, stream=True, follow_redirects=False)
            try:
                return await self._read_response(url, response, where)
            finally:
                await response.aclose()
        except httpx.ConnectError:
            raise
        except httpx.TimeoutException:
            raise TransientError(f"{where}: timed out") from None
        except httpx.TransportError as exc:
            raise TransientError(f"{where}: connection error ({type(exc).__name__})") from None

    def _build_request(self, url: httpx.URL, address: str | None) -> httpx.Request:
        timeout = httpx.Timeout(self._timeout_seconds)
        if address is None:
            return self._client.build_request("GET", url, timeout=timeout)
        # Connect to the checked address; keep Host and TLS name (SNI, certificate) as the
        # URL's. A fresh connection per request, so a pooled connection made for one host
        # name is never reused for another host name on the same address.
        return self._client.build_request(
            "GET",
            url.copy_with(host=address),
            headers={"Host": url.netloc.decode("ascii"), "Connection": "close"},
            extensions={"sni_hostname": url.raw_host.decode("ascii")},
            timeout=timeout,
        )

    async def _read_response(
        self, url: httpx.URL, response: httpx.Response, where: str
    ) -> bytes | httpx.URL:
        status = response.status_code
        if status in _REDIRECT_STATUSES:
            location = response.headers.get("location")
            if not location:
                raise PermanentError(f"{where}: HTTP {status} without a Location")
            return url.join(location)
        _check_status(status, response.headers.get("retry-after"), where)
        content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if not content_type.startswith("image/") and content_type not in _UNTYPED:
            raise PermanentError(f"{where}: not an image (content-type {content_type})")
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_bytes:
            raise self._too_large(where)
        return await self._read_capped(response, where)

    async def _read_capped(self, response: httpx.Response, where: str) -> bytes:
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > self._max_bytes:
                raise self._too_large(where)
        return bytes(body)

    def _too_large(self, where: str) -> PermanentError:
        return PermanentError(f"{where}: larger than {self._max_bytes} bytes")


def _open_no_follow(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NOFOLLOW)


def _check_status(status: int, retry_after: str | None, where: str) -> None:
    if 200 <= status < 300:
        return
    reason = f"{where}: HTTP {status}"
    if status >= 500 or status in _TRANSIENT_STATUSES:
        delay = float(retry_after) if retry_after and retry_after.isdigit() else None
        raise TransientError(reason, retry_after=delay)
    if 400 <= status < 500:  # 401, 403, 404, 410 and the other client errors
        raise PermanentError(reason)
    raise PermanentError(f"{reason} (unexpected status)")


def _default_port(url: httpx.URL) -> int:
    return 443 if url.scheme == "https" else 80
