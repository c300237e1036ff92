"""A local fake of Cloudinary (upload API, Admin API `resource`, delivery) for tests.

It checks upload signatures exactly like Cloudinary: SHA-1 over the sorted `k=v` pairs of
every sent parameter except `file`, `api_key`, `signature` (and `resource_type`,
`cloud_name`), `&` inside values written as `%26` (signature version 2), followed by the
API secret. A bad signature or unknown key gets Cloudinary's 401 error JSON.

    with FakeCloudinaryServer() as cdn:
        store = CloudinaryStore(cdn.credentials(), timeout_seconds=1)
        cdn.fail_next_uploads(2, CloudFault.server_error(503))  # next two uploads: 503
        cdn.fail_next_uploads(1, CloudFault.rate_limited(420))
        cdn.fail_next_admin(1, CloudFault.hang(5))  # next Admin API call hangs
        cdn.fail_next_uploads(3, CloudFault.stored_then_hang(10))  # stored, answer withheld
        cdn.held_uploads  # public id -> client port of each upload being withheld
        cdn.release_held_uploads()  # answer them now
        cdn.uploads_of("storywink/b1/generated/page_1")  # stored uploads of that id
        cdn.put("storywink/b1/originals/page_1", data, delivery_type="authenticated")
        cdn.delete_limit = 2  # a delete by prefix takes 2 assets, answers partial + cursor
        cdn.assets_under("storywink/b1/")  # (delivery type, public id) of what is left

The Admin API's listing (`GET resources/image/{type}?prefix=`) and delete (`DELETE
resources/image/{type}` with `prefix` or `public_ids`, `next_cursor`) answer like
Cloudinary's: at most `delete_limit` (1000) originals a delete, `partial` and a
`next_cursor` while more are left; `fail_next_admin` faults them as every Admin API call.

`secure_url` points at this server (`GET /{cloud}/image/upload/v{version}/{public_id}.{fmt}`).

Delivery types, as on Cloudinary: an `upload` asset is served to anyone at its delivery
URL; an `authenticated` one (the `type` the upload was signed with) never is (401), only
through the Upload API's signed download URL (`cloudinary.utils.private_download_url`:
`GET /v1_1/{cloud}/image/download?…&expires_at=…&signature=…`), checked like an upload's
signature and refused (401) once `expires_at` has passed. Assets of the two types are
distinct, even under one public id.

        cdn.asset(public_id)  # the authenticated asset of that id, else the upload one
        cdn.asset(public_id, "upload")
        cdn.downloads  # (public id, HTTP status) of every signed-download request
"""

from __future__ import annotations

import asyncio
import binascii
import hashlib
import io
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote

from aiohttp import BasicAuth, web
from multidict import MultiDictProxy
from PIL import Image

from storywink.config import CloudinaryCredentials
from tests.support.fakes.gemini_server import BackgroundServer

MAX_BODY_BYTES = 64 * 1024 * 1024
DELIVERY_TYPES = ("authenticated", "upload")
STALE_AFTER_SECONDS = 3600
UNSIGNED_FIELDS = frozenset({"file", "api_key", "signature", "resource_type", "cloud_name"})
_FORMATS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp", "GIF": "gif"}
_CONTENT_TYPES = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp", "gif": "image/gif"}

CloudFaultKind = Literal["http", "hang", "stored_hang", "reset"]


@dataclass(frozen=True)
class CloudFault:
    """What the fake does with one upload or Admin API call. Build with the classmethods."""

    kind: CloudFaultKind
    status: int = 500
    message: str = ""
    raw_body: str | None = None
    seconds: float = 0.0

    @classmethod
    def server_error(cls, status: int = 500, *, html: bool = False) -> CloudFault:
        """5xx with Cloudinary's error JSON, or an HTML page as a load balancer sends it."""
        if html:
            page = f"<html><body><h1>{status} Server Error</h1></body></html>"
            return cls("http", status=status, raw_body=page)
        return cls("http", status=status, message="General Error")

    @classmethod
    def rate_limited(cls, status: int = 420) -> CloudFault:
        return cls("http", status=status, message="Rate Limit Exceeded")

    @classmethod
    def unauthorized(cls, message: str = "Invalid credentials") -> CloudFault:
        return cls("http", status=401, message=message)

    @classmethod
    def http(cls, status: int, message: str) -> CloudFault:
        return cls("http", status=status, message=message)

    @classmethod
    def hang(cls, seconds: float = 30.0) -> CloudFault:
        """Sit on the request, then carry it out anyway (as a real slow upload would)."""
        return cls("hang", seconds=seconds)

    @classmethod
    def stored_then_hang(cls, seconds: float = 30.0) -> CloudFault:
        """Store the upload, then withhold the answer for `seconds`: the uploader cannot
        know its image is stored (an upload whose worker dies before the answer)."""
        return cls("stored_hang", seconds=seconds)

    @classmethod
    def reset(cls) -> CloudFault:
        """Close the connection without answering (nothing is stored)."""
        return cls("reset")


@dataclass
class Asset:
    public_id: str
    data: bytes
    format: str
    width: int
    height: int
    version: int
    tags: list[str] = field(default_factory=list)
    context: dict[str, str] = field(default_factory=dict)
    created_at: str = ""
    delivery_type: str = "upload"


@dataclass(frozen=True)
class RecordedUpload:
    """One upload attempt: its form fields (without the file) and the HTTP status answered."""

    public_id: str
    fields: dict[str, str] = field(repr=False)
    status: int


class FakeCloudinaryServer(BackgroundServer):
    """Fake Cloudinary with fault injection. See the module doc."""

    thread_name = "fake-cloudinary"

    def __init__(
        self,
        cloud_name: str = "storywink-test",
        api_key: str = "614335564976464",
        api_secret: str = "fake-cloudinary-secret-LEAK-CANARY",
    ) -> None:
        super().__init__()
        self.cloud_name = cloud_name
        self.api_key = api_key
        self.api_secret = api_secret
        self._assets: dict[tuple[str, str], Asset] = {}  # by (delivery type, public id)
        self._downloads: list[tuple[str, int]] = []
        self.delete_limit = 1000  # originals one Admin API delete removes, as Cloudinary's
        self._deleted: list[tuple[str, str]] = []
        self._uploads: list[RecordedUpload] = []
        self._stored_counts: dict[str, int] = {}
        self._upload_faults: deque[CloudFault] = deque()
        self._admin_faults: deque[CloudFault] = deque()
        self._admin_calls = 0
        self._version = 0
        self._held: dict[str, int] = {}
        self._releases: list[asyncio.Event] = []

    # ----- configuration and inspection (any thread) -----

    def cloudinary_url(self, api_secret: str | None = None, api_key: str | None = None) -> str:
        """A CLOUDINARY_URL aimed at this server (optionally with other credentials)."""
        key = api_key if api_key is not None else self.api_key
        secret = api_secret if api_secret is not None else self.api_secret
        prefix = quote(self.base_url, safe="")
        return f"cloudinary://{key}:{secret}@{self.cloud_name}?upload_prefix={prefix}"

    def credentials(
        self, api_secret: str | None = None, api_key: str | None = None
    ) -> CloudinaryCredentials:
        return CloudinaryCredentials(self.cloudinary_url(api_secret, api_key))

    def fail_next_uploads(self, n: int, fault: CloudFault) -> None:
        with self._lock:
            self._upload_faults.extend([fault] * n)

    def fail_next_admin(self, n: int, fault: CloudFault) -> None:
        with self._lock:
            self._admin_faults.extend([fault] * n)

    def put(
        self,
        public_id: str,
        data: bytes,
        tags: list[str] | None = None,
        context: dict[str, str] | None = None,
        *,
        delivery_type: str = "upload",
    ) -> Asset:
        """Store an asset directly, as if uploaded earlier."""
        with self._lock:
            return self._store(public_id, data, tags or [], context or {}, delivery_type)

    def asset(self, public_id: str, delivery_type: str | None = None) -> Asset | None:
        """The asset of that id and type; without a type, the authenticated one, else the
        upload one."""
        with self._lock:
            for kind in (delivery_type,) if delivery_type else DELIVERY_TYPES:
                asset = self._assets.get((kind, public_id))
                if asset is not None:
                    return asset
            return None

    @property
    def downloads(self) -> list[tuple[str, int]]:
        """(public id, HTTP status) of every signed-download request."""
        with self._lock:
            return list(self._downloads)

    def assets_under(self, prefix: str) -> list[tuple[str, str]]:
        """(delivery type, public id) of every asset whose id starts with `prefix`."""
        with self._lock:
            return sorted(key for key in self._assets if key[1].startswith(prefix))

    @property
    def deleted(self) -> list[tuple[str, str]]:
        """(delivery type, public id) of every asset the Admin API deleted, in order."""
        with self._lock:
            return list(self._deleted)

    def uploads_of(self, public_id: str) -> int:
        """How many uploads were stored under `public_id` (faulted attempts not counted)."""
        with self._lock:
            return self._stored_counts.get(public_id, 0)

    @property
    def uploads(self) -> list[RecordedUpload]:
        with self._lock:
            return list(self._uploads)

    @property
    def upload_attempts(self) -> int:
        with self._lock:
            return len(self._uploads)

    @property
    def held_uploads(self) -> dict[str, int]:
        """Uploads stored whose answer is being withheld: public id -> the client's port."""
        with self._lock:
            return dict(self._held)

    def release_held_uploads(self) -> None:
        """Answer every upload held by `stored_then_hang` now."""
        with self._lock:
            releases, self._releases = self._releases, []
        loop = self._loop
        if loop is not None:
            for release in releases:
                loop.call_soon_threadsafe(release.set)

    @property
    def admin_calls(self) -> int:
        with self._lock:
            return self._admin_calls

    def delivery_url(self, asset: Asset) -> str:
        """The asset's delivery URL, unsigned: it serves an `upload` asset only."""
        path = (
            f"{self.cloud_name}/image/{asset.delivery_type}/v{asset.version}/"
            f"{asset.public_id}.{asset.format}"
        )
        return self.url(path)

    # ----- the app -----

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_post("/v1_1/{cloud}/image/upload", self._upload)
        app.router.add_get("/v1_1/{cloud}/image/download", self._download)
        app.router.add_post("/v1_1/{cloud}/image/destroy", self._destroy)
        app.router.add_get("/v1_1/{cloud}/resources/image/{type}", self._list)
        app.router.add_delete("/v1_1/{cloud}/resources/image/{type}", self._delete)
        app.router.add_get("/v1_1/{cloud}/resources/image/{type}/{public_id:.+}", self._resource)
        app.router.add_get("/{cloud}/image/{type}/{path:.+}", self._deliver)
        return app

    async def _upload(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        fields = _text_fields(form)
        with self._lock:
            fault = self._upload_faults.popleft() if self._upload_faults else None
        if fault is not None and fault.kind not in ("hang", "stored_hang"):
            self._record(fields, fault.status if fault.kind == "http" else 0)
            return await self._fault(request, fault)
        if fault is not None and fault.kind == "hang" and not await self.pause(fault.seconds):
            return _error(503, "shutting down")
        status, body = self._accept_upload(request.match_info["cloud"], fields, form.get("file"))
        self._record(fields, status)
        if fault is not None and fault.kind == "stored_hang":
            await self._withhold(request, fields.get("public_id", ""), fault.seconds)
        return web.json_response(body, status=status)

    async def _withhold(self, request: web.Request, public_id: str, seconds: float) -> None:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        release = asyncio.Event()
        with self._lock:
            self._held[public_id] = int(peer[1]) if peer else 0
            self._releases.append(release)
        try:
            await asyncio.wait_for(release.wait(), timeout=seconds)
        except TimeoutError:
            pass
        finally:
            with self._lock:
                self._held.pop(public_id, None)

    def _accept_upload(
        self, cloud: str, fields: dict[str, str], file: object
    ) -> tuple[int, dict[str, Any]]:
        problem = self._signature_problem(cloud, fields)
        if problem is not None:
            return 401, {"error": {"message": problem}}
        data = _file_bytes(file)
        if data is None:
            return 400, {"error": {"message": "Missing required parameter - file"}}
        if _image_format(data) is None:
            return 400, {"error": {"message": "Invalid image file"}}
        public_id = fields.get("public_id") or hashlib.sha1(data).hexdigest()[:20]
        kind = fields.get("type") or "upload"
        if kind not in DELIVERY_TYPES:
            return 400, {"error": {"message": f"Invalid type {kind}"}}
        tags = [tag for tag in fields.get("tags", "").split(",") if tag]
        context = parse_context(fields.get("context", ""))
        with self._lock:
            existing = self._assets.get((kind, public_id))
            if existing is not None and fields.get("overwrite", "1") in ("0", "false"):
                return 200, {**self._resource_json(existing), "existing": True}
            asset = self._store(public_id, data, tags, context, kind)
        body = self._resource_json(asset)
        body.update(
            overwritten=existing is not None, original_filename="file", api_key=self.api_key
        )
        return 200, body

    def _signature_problem(
        self, cloud: str, fields: dict[str, str], *, check_age: bool = True
    ) -> str | None:
        if cloud != self.cloud_name:
            return f"Invalid cloud_name {cloud}"
        if fields.get("api_key") != self.api_key:
            return f"Unknown API key {fields.get('api_key', '')}"
        timestamp = fields.get("timestamp", "")
        if not timestamp.isdigit():
            return "Missing required parameter - timestamp"
        if check_age and time.time() - int(timestamp) > STALE_AFTER_SECONDS:
            return f"Stale request - reported time is {timestamp} which is more than 1 hour ago"
        to_sign = string_to_sign(fields)
        expected = hashlib.sha1((to_sign + self.api_secret).encode()).hexdigest()
        signature = fields.get("signature", "")
        if signature != expected:
            return f"Invalid Signature {signature}. String to sign - '{to_sign}'."
        return None

    async def _admin_refusal(self, request: web.Request) -> web.StreamResponse | None:
        """Count an Admin API call and carry out its fault; None: answer it."""
        with self._lock:
            self._admin_calls += 1
            fault = self._admin_faults.popleft() if self._admin_faults else None
        if fault is not None and fault.kind != "hang":
            return await self._fault(request, fault)
        if fault is not None and not await self.pause(fault.seconds):
            return _error(503, "shutting down")
        if not self._admin_authorized(request):
            return _error(401, "Invalid credentials")
        return None

    async def _resource(self, request: web.Request) -> web.StreamResponse:
        if (refusal := await self._admin_refusal(request)) is not None:
            return refusal
        public_id = request.match_info["public_id"]
        with self._lock:
            asset = self._assets.get((request.match_info["type"], public_id))
            body = self._resource_json(asset) if asset is not None else None
        if body is None:
            return _error(404, f"Resource not found - {public_id}")
        return web.json_response(body)

    async def _list(self, request: web.Request) -> web.StreamResponse:
        """Admin API `resources`: by prefix, oldest first, `max_results` a page."""
        if (refusal := await self._admin_refusal(request)) is not None:
            return refusal
        delivery_type = request.match_info["type"]
        prefix = request.query.get("prefix", "")
        try:
            limit = min(int(request.query.get("max_results", "10")), 500)
            start = int(request.query.get("next_cursor", "0"))
        except ValueError:
            return _error(400, "Invalid max_results or next_cursor")
        with self._lock:
            found = [
                asset
                for (kind, public_id), asset in sorted(self._assets.items())
                if kind == delivery_type and public_id.startswith(prefix)
            ]
            page = [self._resource_json(asset) for asset in found[start : start + limit]]
        body: dict[str, Any] = {"resources": page}
        if start + limit < len(found):
            body["next_cursor"] = str(start + limit)
        return web.json_response(body)

    async def _delete(self, request: web.Request) -> web.StreamResponse:
        """Admin API `delete_resources` (by `public_ids`) or `delete_resources_by_prefix`:
        at most `delete_limit` originals a call; `partial` and a `next_cursor` if more are
        left (the cursor only says "go on": what is deleted is gone)."""
        if (refusal := await self._admin_refusal(request)) is not None:
            return refusal
        try:
            params = await request.json()
        except ValueError:
            return _error(400, "Invalid JSON body")
        delivery_type = request.match_info["type"]
        prefix = params.get("prefix")
        public_ids = params.get("public_ids")
        if not prefix and not public_ids:
            return _error(400, "Missing required parameter - public_ids, prefix or all")
        with self._lock:
            if prefix:
                matching = sorted(
                    key
                    for key in self._assets
                    if key[0] == delivery_type and key[1].startswith(prefix)
                )
            else:
                matching = [(delivery_type, public_id) for public_id in public_ids]
            batch, rest = matching[: self.delete_limit], matching[self.delete_limit :]
            deleted: dict[str, str] = {}
            for key in batch:
                found = self._assets.pop(key, None)
                deleted[key[1]] = "deleted" if found is not None else "not_found"
                if found is not None:
                    self._deleted.append(key)
        body: dict[str, Any] = {"deleted": deleted, "deleted_counts": {}, "partial": bool(rest)}
        if rest:
            body["next_cursor"] = hashlib.sha1(rest[0][1].encode()).hexdigest()
        return web.json_response(body)

    def _admin_authorized(self, request: web.Request) -> bool:
        if request.match_info["cloud"] != self.cloud_name:
            return False
        try:
            auth = BasicAuth.decode(request.headers.get("Authorization", ""))
        except ValueError:
            return False
        return bool(auth.login == self.api_key and auth.password == self.api_secret)

    async def _deliver(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["type"] == "authenticated":  # only through a signed URL
            return web.Response(status=401, headers={"X-Cld-Error": "Authentication required"})
        public_id = _delivery_public_id(request.match_info["path"])
        with self._lock:
            asset = self._assets.get(("upload", public_id))
        if request.match_info["cloud"] != self.cloud_name or asset is None:
            return web.Response(status=404, text="Resource not found")
        return _image_response(asset)

    async def _destroy(self, request: web.Request) -> web.StreamResponse:
        """The Upload API's `destroy` of one asset of one type, signed like an upload."""
        fields = _text_fields(await request.post())
        problem = self._signature_problem(request.match_info["cloud"], fields)
        if problem is not None:
            return _error(401, problem)
        key = (fields.get("type") or "upload", fields.get("public_id", ""))
        with self._lock:
            gone = self._assets.pop(key, None)
        return web.json_response({"result": "ok" if gone else "not found"})

    async def _download(self, request: web.Request) -> web.StreamResponse:
        """The Upload API's signed download of a private asset, until `expires_at`."""
        fields = dict(request.query)
        public_id = fields.get("public_id", "")
        status, answer = self._signed_download(request.match_info["cloud"], fields)
        with self._lock:
            self._downloads.append((public_id, status))
        return answer

    def _signed_download(
        self, cloud: str, fields: dict[str, str]
    ) -> tuple[int, web.StreamResponse]:
        problem = self._signature_problem(cloud, fields, check_age=False)
        if problem is not None:
            return 401, _error(401, problem)
        expires_at = fields.get("expires_at", "")
        if not expires_at.isdigit():  # Cloudinary's default: an hour after the timestamp
            expires_at = str(int(fields["timestamp"]) + STALE_AFTER_SECONDS)
        if time.time() >= int(expires_at):
            return 401, _error(401, f"Download URL expired at {expires_at}")
        with self._lock:
            asset = self._assets.get((fields.get("type") or "upload", fields.get("public_id", "")))
        if asset is None:
            return 404, _error(404, "Resource not found")
        return 200, _image_response(asset)

    async def _fault(self, request: web.Request, fault: CloudFault) -> web.StreamResponse:
        if fault.kind == "reset":
            return await self.reset_connection(request)
        if fault.raw_body is not None:
            return web.Response(status=fault.status, text=fault.raw_body, content_type="text/html")
        return _error(fault.status, fault.message)

    # ----- state (call with self._lock held) -----

    def _store(
        self,
        public_id: str,
        data: bytes,
        tags: list[str],
        context: dict[str, str],
        delivery_type: str = "upload",
    ) -> Asset:
        image_format, width, height = _image_format(data) or ("bin", 0, 0)
        self._version = max(self._version + 1, int(time.time()))
        asset = Asset(
            public_id=public_id,
            data=data,
            format=image_format,
            width=width,
            height=height,
            version=self._version,
            tags=list(tags),
            context=dict(context),
            created_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            delivery_type=delivery_type,
        )
        self._assets[(delivery_type, public_id)] = asset
        self._stored_counts[public_id] = self._stored_counts.get(public_id, 0) + 1
        return asset

    def _record(self, fields: dict[str, str], status: int) -> None:
        upload = RecordedUpload(fields.get("public_id", ""), fields, status)
        with self._lock:
            self._uploads.append(upload)

    def _resource_json(self, asset: Asset) -> dict[str, Any]:
        secure_url = self.delivery_url(asset)
        body: dict[str, Any] = {
            "asset_id": hashlib.md5(asset.public_id.encode()).hexdigest(),
            "public_id": asset.public_id,
            "version": asset.version,
            "version_id": hashlib.md5(f"{asset.version}".encode()).hexdigest(),
            "format": asset.format,
            "resource_type": "image",
            "type": asset.delivery_type,
            "created_at": asset.created_at,
            "bytes": len(asset.data),
            "width": asset.width,
            "height": asset.height,
            "tags": list(asset.tags),
            "etag": hashlib.md5(asset.data).hexdigest(),
            "placeholder": False,
            "url": secure_url,
            "secure_url": secure_url,
        }
        if asset.context:
            body["context"] = {"custom": dict(asset.context)}
        return body


def string_to_sign(fields: dict[str, str]) -> str:
    """Cloudinary's string to sign (version 2) for the sent form fields."""
    pairs = [
        f"{key}={value}".replace("&", "%26")
        for key, value in fields.items()
        if key not in UNSIGNED_FIELDS and value
    ]
    return "&".join(sorted(pairs))


def parse_context(encoded: str) -> dict[str, str]:
    """`k=v|k2=v2` with `\\=` and `\\|` escapes in values -> dict."""
    context: dict[str, str] = {}
    for item in _split_unescaped(encoded, "|"):
        key, _, value = _split_unescaped_once(item, "=")
        if key:
            context[key] = value.replace("\\=", "=").replace("\\|", "|")
    return context


def _split_unescaped(text: str, separator: str) -> list[str]:
    items, current, escaped = [], "", False
    for char in text:
        if char == separator and not escaped:
            items.append(current)
            current = ""
        else:
            current += char
        escaped = char == "\\" and not escaped
    items.append(current)
    return items


def _split_unescaped_once(text: str, separator: str) -> tuple[str, str, str]:
    parts = _split_unescaped(text, separator)
    if len(parts) <= 1:
        return text, "", ""
    head = parts[0]
    return head, separator, text[len(head) + 1 :]


def _text_fields(form: MultiDictProxy[Any]) -> dict[str, str]:
    """Form fields except the file; `k[]` arrays joined with commas under `k`."""
    fields: dict[str, list[str]] = {}
    for key, value in form.items():
        if key == "file" or not isinstance(value, str):
            continue
        fields.setdefault(key.removesuffix("[]"), []).append(value)
    return {key: ",".join(values) for key, values in fields.items()}


def _file_bytes(file: object) -> bytes | None:
    if isinstance(file, web.FileField):
        data = file.file.read()
        return bytes(data) if data else None
    if isinstance(file, str) and file:
        return file.encode()
    return None


def _image_format(data: bytes) -> tuple[str, int, int] | None:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            image_format = _FORMATS.get(image.format or "")
            return (image_format, image.width, image.height) if image_format else None
    except (OSError, SyntaxError, binascii.Error, Image.DecompressionBombError):
        return None


def _delivery_public_id(path: str) -> str:
    first, _, rest = path.partition("/")
    if rest and first.startswith("v") and first[1:].isdigit():
        path = rest
    return path.rsplit(".", 1)[0] if "." in path.rsplit("/", 1)[-1] else path


def _image_response(asset: Asset) -> web.Response:
    content_type = _CONTENT_TYPES.get(asset.format, "application/octet-stream")
    return web.Response(body=asset.data, content_type=content_type)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": {"message": message}}, status=status)
