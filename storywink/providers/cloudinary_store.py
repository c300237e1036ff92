"""Cloudinary as an `ImageStore`.

Credentials go with every call, never into the SDK's global `cloudinary.config()`, so two
stores (or tests) never share state. The SDK blocks, so calls run in a worker thread.
Its errors are mostly stringly typed (transport failures all become `cloudinary.exceptions
.Error`/`GeneralError`, some statuses a bare `Exception`), hence the message parsing below.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Final, TypeVar

import cloudinary.api
import cloudinary.exceptions as cloudinary_errors
import cloudinary.uploader
import cloudinary.utils

from storywink.config import CloudinaryCredentials
from storywink.providers.base import (
    FleetFault,
    GeneratedImage,
    PermanentError,
    ProviderError,
    StoredImage,
    TransientError,
)
from storywink.redact import redact, shorten

T = TypeVar("T")

PRIVATE_TYPE: Final = "authenticated"
PUBLIC_TYPE: Final = "upload"
RETRYABLE_4XX: Final = frozenset({408, 409, 420, 429})
# Where a book's assets may live: public today, private (signed delivery) with issue 21.
DELIVERY_TYPES: Final = ("upload", "authenticated")
# Deleting by prefix takes at most 1000 assets a call (`partial` and a `next_cursor` say
# more are left); a listing afterwards proves none is. Rounds bound a CDN that keeps some.
MAX_DELETE_ROUNDS: Final = 20
_REASON_LIMIT = 200
_ADMIN_STATUS_PREFIX = re.compile(r"^Error (\d{3}) - ")  # Admin API: "Error 404 - Not found"
_STATUS_PATTERNS = (
    re.compile(r"server response \((\d{3})\)"),  # non-JSON body: "...server response (502)"
    _ADMIN_STATUS_PREFIX,
)
_TIMEOUT_PATTERN = re.compile(r"(?i)timed out|timeout")
_CONNECTION_PATTERN = re.compile(
    r"(?i)^(unexpected error|socket error)|max retries|connection|remotedisconnected|protocolerror"
)
_CONNECTION_DETAILS = (
    re.compile(r"(\[Errno -?\d+\][^'\")]*)"),
    re.compile(r"RemoteDisconnected\('([^']*)'"),
    re.compile(r"ProtocolError\('([^']*)'"),
)


class _Missing(Exception):
    """The Admin API said 404."""


def delivery_type(private: bool) -> str:
    """Cloudinary's delivery type: `authenticated` assets are served only through a
    signed URL; `upload` ones to anyone who has the URL."""
    return PRIVATE_TYPE if private else PUBLIC_TYPE


class CloudinaryStore:
    """Keeps pictures on Cloudinary under caller-chosen public ids, with tags and context.

    Photos and pictures are `authenticated` assets: their delivery URLs answer only when
    signed, and what we hand out is the Upload API's signed download URL
    (`cloudinary.utils.private_download_url`), which carries an `expires_at` in its
    signature and is refused after it."""

    name = "cloudinary"

    def __init__(self, credentials: CloudinaryCredentials, timeout_seconds: float = 60.0) -> None:
        self._credentials = credentials
        self._timeout = timeout_seconds

    async def store(
        self,
        image: GeneratedImage,
        public_id: str,
        tags: list[str],
        context: dict[str, str],
        *,
        private: bool = True,
    ) -> StoredImage:
        result = await self._call(
            self._upload, image.data, public_id, list(tags), dict(context), delivery_type(private)
        )
        stored_id = str(result.get("public_id") or public_id)
        if private:  # its secure_url is signed for good: never keep or show it
            return StoredImage(url="", public_id=stored_id, context=context)
        url = result.get("secure_url")
        if not isinstance(url, str) or not url:
            raise TransientError("upload answer has no secure_url")
        return StoredImage(url=url, public_id=stored_id, context=context, private=False)

    async def find(self, public_id: str, *, private: bool = True) -> StoredImage | None:
        try:
            result = await self._call(self._resource, public_id, delivery_type(private))
        except _Missing:
            return None
        context = custom_context(result)
        if private:
            return StoredImage(url="", public_id=public_id, context=context)
        url = result.get("secure_url")
        if not isinstance(url, str) or not url:
            raise TransientError("resource answer has no secure_url")
        return StoredImage(url=url, public_id=public_id, context=context, private=False)

    def signed_url(self, public_id: str, expires_at: datetime) -> str:
        url: str = cloudinary.utils.private_download_url(
            public_id,
            None,  # the format it was stored in
            type=PRIVATE_TYPE,
            expires_at=int(expires_at.timestamp()),
            **self._options(),
        )
        return url

    async def delete_public(self, public_id: str) -> None:
        """Delete the public (`upload`) asset of `public_id`, e.g. one a release before
        private images stored, once it is stored privately; a missing one is no error."""
        await self._call(self._destroy, public_id, PUBLIC_TYPE)

    async def delete_prefix(self, prefix: str) -> int:
        if not prefix.endswith("/"):
            raise PermanentError(f"refusing to delete by a prefix that is not a folder: {prefix!r}")
        deleted = 0
        for delivery_type in DELIVERY_TYPES:
            for _ in range(MAX_DELETE_ROUNDS):
                deleted += await self._call(self._delete_by_prefix, prefix, delivery_type)
                if not await self._call(self._any_under, prefix, delivery_type):
                    break
            else:
                raise TransientError(
                    f"assets remain under {prefix} ({delivery_type}) after "
                    f"{MAX_DELETE_ROUNDS} rounds of deletes"
                )
        return deleted

    async def probe(self) -> bool:
        """Whether the CDN accepts the credentials now (an admin lookup of an id that need
        not exist; nothing is uploaded): how a paused worker finds a 401 cleared."""
        try:
            await self.find("storywink/credentials-probe")
        except ProviderError:
            return False
        return True

    # ----- blocking SDK calls, run in a thread -----

    def _upload(
        self, data: bytes, public_id: str, tags: list[str], context: dict[str, str], kind: str
    ) -> Mapping[str, Any]:
        result: Mapping[str, Any] = cloudinary.uploader.upload(
            data,
            public_id=public_id,
            type=kind,
            overwrite=True,
            invalidate=True,
            resource_type="image",
            tags=tags,
            context=context,
            upload_preset=None,  # never pick up a preset from a global config
            **self._options(),
        )
        return result

    def _destroy(self, public_id: str, kind: str) -> Mapping[str, Any]:
        result: Mapping[str, Any] = cloudinary.uploader.destroy(
            public_id, type=kind, invalidate=True, resource_type="image", **self._options()
        )
        return result

    def _resource(self, public_id: str, kind: str) -> Mapping[str, Any]:
        try:
            result: Mapping[str, Any] = cloudinary.api.resource(
                public_id, resource_type="image", type=kind, **self._options()
            )
        except cloudinary_errors.NotFound:
            raise _Missing from None
        return result

    def _delete_by_prefix(self, prefix: str, delivery_type: str) -> int:
        """Delete by prefix, following `next_cursor` while the answer is `partial`."""
        deleted = 0
        cursor: dict[str, str] = {}
        while True:
            result: Mapping[str, Any] = cloudinary.api.delete_resources_by_prefix(
                prefix,
                resource_type="image",
                type=delivery_type,
                invalidate=True,  # no CDN cache keeps serving an erased picture
                **cursor,
                **self._options(),
            )
            answers = result.get("deleted")
            if isinstance(answers, Mapping):
                deleted += sum(1 for answer in answers.values() if answer == "deleted")
            next_cursor = result.get("next_cursor")
            if not result.get("partial") or not isinstance(next_cursor, str) or not next_cursor:
                return deleted
            cursor = {"next_cursor": next_cursor}

    def _any_under(self, prefix: str, delivery_type: str) -> bool:
        result: Mapping[str, Any] = cloudinary.api.resources(
            resource_type="image",
            type=delivery_type,
            prefix=prefix,
            max_results=1,
            **self._options(),
        )
        resources = result.get("resources")
        return isinstance(resources, list) and bool(resources)

    def _options(self) -> dict[str, Any]:
        credentials = self._credentials
        return {
            "cloud_name": credentials.cloud_name,
            "api_key": credentials.api_key,
            "api_secret": credentials.api_secret.get_secret_value(),
            "upload_prefix": credentials.upload_prefix,  # None -> the SDK's default host
            "oauth_token": None,
            "signature_algorithm": "sha1",
            "signature_version": 2,
            "timeout": self._timeout,
        }

    async def _call(self, function: Callable[..., T], *args: Any) -> T:
        try:
            return await asyncio.to_thread(function, *args)
        except _Missing:
            raise
        except (cloudinary_errors.Error, ValueError) as exc:
            raise self._error(exc) from None
        except Exception as exc:
            # The Admin API raises a bare Exception for statuses it has no class for.
            if type(exc) is not Exception:
                raise
            raise self._error(exc) from None

    def _error(self, exc: Exception) -> ProviderError:
        return classify_error(exc, self._credentials.api_secret.get_secret_value())


def classify_error(exc: Exception, secret: str = "") -> ProviderError:
    """Map a Cloudinary SDK exception to a provider error with a short, secret-free reason."""
    full = redact(str(exc), [secret])
    message = shorten(full, _REASON_LIMIT)
    if isinstance(exc, cloudinary_errors.AuthorizationRequired | cloudinary_errors.NotAllowed):
        return FleetFault(f"unauthorized: {message}", "CLOUDINARY_URL")
    if isinstance(exc, cloudinary_errors.BadRequest):
        return PermanentError(f"bad request: {message}")
    if isinstance(exc, cloudinary_errors.RateLimited):
        return TransientError(f"rate limited: {message}")
    if isinstance(exc, ValueError):
        return PermanentError(f"bad configuration: {message}")
    status = _status(full)
    if status is not None:
        detail = shorten(_ADMIN_STATUS_PREFIX.sub("", full), _REASON_LIMIT)
        if 400 <= status < 500 and status not in RETRYABLE_4XX:
            return PermanentError(f"HTTP {status}: {detail}")
        return TransientError(f"HTTP {status}: {detail}")
    if _TIMEOUT_PATTERN.search(full):
        return TransientError("timeout")
    if _CONNECTION_PATTERN.search(full):
        return TransientError(f"connection error: {_connection_detail(full)}")
    if isinstance(exc, cloudinary_errors.NotFound):
        return PermanentError(f"not found: {message}")
    # GeneralError (500/503) and anything unrecognised: worth another try.
    return TransientError(f"server error: {message}")


def custom_context(resource: Mapping[str, Any]) -> dict[str, str]:
    """The `context.custom` key/values of an Admin API resource."""
    context = resource.get("context")
    custom = context.get("custom") if isinstance(context, Mapping) else None
    if not isinstance(custom, Mapping):
        return {}
    return {str(key): str(value) for key, value in custom.items()}


def _connection_detail(message: str) -> str:
    """The useful bit of urllib3's long repr: "[Errno 111] Connection refused" and the like."""
    for pattern in _CONNECTION_DETAILS:
        match = pattern.search(message)
        if match:
            return shorten(match.group(1), 120)
    return shorten(message, 120)


def _status(message: str) -> int | None:
    for pattern in _STATUS_PATTERNS:
        match = pattern.search(message)
        if match:
            return int(match.group(1))
    return None
