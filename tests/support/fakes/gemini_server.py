"""A local fake of the Gemini API (`generateContent`) for tests, plus a tiny static file host.

It speaks the wire format the real `google-genai` SDK sends and reads:
`POST /{api_version}/models/{model}:generateContent` (google-genai 3.x defaults to `v1`,
older releases to `v1beta`; any version is accepted), `GET /{api_version}/models/{model}`
(`models.get`) and `GET /{api_version}/models` (`models.list`). It knows the models of
`KNOWN_MODELS` (`add_model`, `retire_model`); any other one is answered 404 `NOT_FOUND`, as
Google answers a model it has shut down. By default it answers with a real PNG drawn from
the first inline image of the request (posterised), `finishReason: STOP`.

Two answer formats, chosen per server (`answer_format`): "2025" (one image part, usage
without details) and "2026", today's thinking image models (read 2026-12-04, see
docs/gemini-models.md): a thought text part first, then the final image carrying a
`thoughtSignature`, `usageMetadata` with `thoughtsTokenCount`, `promptTokensDetails` and
`candidatesTokensDetails` per modality, the image's tokens by its `imageSize`. A key the
server does not accept is answered as Google does: 400 `INVALID_ARGUMENT` with an
`ErrorInfo` whose reason is `API_KEY_INVALID`.

Faults are injected per call or per page::

    with FakeGeminiServer(api_key="test-key") as gemini:
        gemini.fail_next(2, Fault.rate_limited(retry_delay="2s"))  # next two calls: 429
        gemini.fail_when("Chapter 3", Fault.finish("IMAGE_SAFETY"))  # that page: refused
        gemini.set_quota(5, window_seconds=1.0)  # >5 calls per second: 429
        url = gemini.add_image("/photos/1.png", png_bytes)  # GET-able photo for the page

The server runs its own event loop in a daemon thread, so it works from sync and async
tests alike; `BackgroundServer` is reused by the fake Cloudinary.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Self

from aiohttp import web
from PIL import Image, ImageOps

GOOGLE_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
RETRY_INFO_TYPE = "type.googleapis.com/google.rpc.RetryInfo"
ERROR_INFO_TYPE = "type.googleapis.com/google.rpc.ErrorInfo"
AnswerFormat = Literal["2025", "2026"]
ANSWER_FORMATS: tuple[AnswerFormat, ...] = ("2025", "2026")
# Output tokens of one image by `imageSize` (Gemini 3.1 Flash Image's model page).
IMAGE_TOKENS = {"512": 747, "1K": 1120, "2K": 1680, "4K": 2520}
THOUGHT_SIGNATURE = base64.b64encode(b"fake-thought-signature-DO-NOT-STORE").decode()
THOUGHT_TEXT = "**Planning the page** I will keep the child's pose and use the palette."
# (name, display name) of the models the fake knows by default.
KNOWN_MODELS: tuple[tuple[str, str], ...] = (
    ("gemini-3.1-flash-image", "Nano Banana 2"),
    ("gemini-3-pro-image", "Nano Banana Pro"),
    ("gemini-3.5-flash-lite", "Gemini 3.5 Flash-Lite"),
    ("gemini-3.5-flash", "Gemini 3.5 Flash"),
    ("gemini-3.8-flash", "Gemini 3.8 Flash"),
    ("gemini-3.1-flash-lite", "Gemini 3.1 Flash-Lite"),
)
MAX_BODY_BYTES = 64 * 1024 * 1024


class BackgroundServer:
    """An aiohttp app served on 127.0.0.1 (free port) by an event loop in a daemon thread."""

    thread_name = "fake-server"

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._stopping: asyncio.Event | None = None
        self._port = 0
        self._lock = threading.Lock()

    def build_app(self) -> web.Application:
        raise NotImplementedError

    @property
    def base_url(self) -> str:
        if not self._port:
            raise RuntimeError("server not started")
        return f"http://127.0.0.1:{self._port}"

    def url(self, path: str) -> str:
        return self.base_url + "/" + path.lstrip("/")

    def start(self) -> Self:
        if self._thread is not None:
            return self
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(
            target=self._run_loop, args=(loop,), name=self.thread_name, daemon=True
        )
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), loop).result(timeout=10)
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if self._stopping is not None:
            loop.call_soon_threadsafe(self._stopping.set)
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        self._loop = self._thread = self._runner = None
        self._port = 0

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @staticmethod
    def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        runner = web.AppRunner(self.build_app(), access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runner = runner
        self._port = int(runner.addresses[0][1])

    async def pause(self, seconds: float) -> bool:
        """Sleep `seconds`, waking early when the server stops. True if it slept fully."""
        if self._stopping is None:
            await asyncio.sleep(seconds)
            return True
        try:
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
        except TimeoutError:
            return True
        return False

    @staticmethod
    async def reset_connection(request: web.Request) -> web.StreamResponse:
        """Drop the TCP connection without sending a single byte of response."""
        transport = request.transport
        if transport is not None:
            transport.abort()
        # The response can never be written; aiohttp discards it for a closed transport.
        return web.Response(status=499)


FaultKind = Literal["ok", "http", "blocked", "finish", "bad_image", "delay", "reset", "story"]


@dataclass(frozen=True)
class Fault:
    """What the fake does with one `generateContent` call. Build with the classmethods."""

    kind: FaultKind
    code: int = 200
    status: str = ""
    message: str = ""
    retry_delay: str | None = None
    raw_body: str | None = None
    content_type: str = "application/json"
    retry_after_header: str | None = None
    reason: str = ""
    text: str | None = None
    mime_type: str = "image/png"
    data: bytes | None = None
    seconds: float = 0.0
    thought_image: bool = False
    interim_images: int = 0
    interim_flagged: bool = True

    @classmethod
    def ok(cls, text: str | None = None, *, thought_image: bool = False) -> Fault:
        """A normal image answer, optionally after a text part and a 'thought' image."""
        return cls("ok", text=text, thought_image=thought_image)

    @classmethod
    def thinking(cls, interim_images: int = 2, *, flagged: bool = True) -> Fault:
        """A thinking model's answer: `interim_images` drafts (flat tiles of other colours,
        each after a thought text), flagged `thought` or not, then the final image."""
        return cls("ok", interim_images=interim_images, interim_flagged=flagged)

    @classmethod
    def http(
        cls,
        code: int,
        message: str | None = None,
        *,
        status: str | None = None,
        retry_delay: str | None = None,
        raw_body: str | None = None,
        content_type: str = "application/json",
        retry_after_header: str | None = None,
        reason: str = "",
    ) -> Fault:
        """An HTTP error with a Google-style JSON body (or `raw_body` verbatim); `reason`
        adds an `ErrorInfo` detail with that reason."""
        return cls(
            "http",
            reason=reason,
            code=code,
            status=status if status is not None else GOOGLE_STATUS.get(code, "UNKNOWN"),
            message=message if message is not None else f"fake error {code}",
            retry_delay=retry_delay,
            raw_body=raw_body,
            content_type=content_type,
            retry_after_header=retry_after_header,
        )

    @classmethod
    def bad_key(cls) -> Fault:
        """Google's answer to a bad or revoked key: 400 with ErrorInfo API_KEY_INVALID."""
        return cls.http(
            400, "API key not valid. Please pass a valid API key.", reason="API_KEY_INVALID"
        )

    @classmethod
    def rate_limited(cls, retry_delay: str | None = "2s", message: str | None = None) -> Fault:
        text = message or "You exceeded your current quota, please retry later."
        return cls.http(429, text, retry_delay=retry_delay)

    @classmethod
    def blocked(cls, reason: str = "SAFETY") -> Fault:
        """`promptFeedback.blockReason` and no candidates."""
        return cls("blocked", reason=reason)

    @classmethod
    def finish(cls, reason: str, text: str | None = None) -> Fault:
        """A candidate without an image, ending with `finishReason`, optionally with text."""
        return cls("finish", reason=reason, text=text)

    @classmethod
    def text_only(cls, text: str = "I cannot draw this picture.") -> Fault:
        return cls.finish("STOP", text)

    @classmethod
    def not_an_image(cls, mime_type: str = "image/png", data: bytes = b"not an image") -> Fault:
        """An inline part that claims an image mime type but holds other bytes."""
        return cls("bad_image", mime_type=mime_type, data=data)

    @classmethod
    def mislabelled_image(cls, mime_type: str = "image/jpeg") -> Fault:
        """A real PNG declared as another image type."""
        return cls("bad_image", mime_type=mime_type)

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        """Answer normally after `seconds` (latency)."""
        return cls("delay", seconds=seconds)

    @classmethod
    def hang(cls, seconds: float = 30.0) -> Fault:
        """Sit on the request for a long time (past any sane client timeout)."""
        return cls("delay", seconds=seconds)

    @classmethod
    def story(cls, text: str, reason: str = "STOP") -> Fault:
        """A JSON-mode (story) answer whose text is `text` verbatim, ending with `reason`."""
        return cls("story", text=text, reason=reason)

    @classmethod
    def reset(cls) -> Fault:
        """Close the connection without answering."""
        return cls("reset")


@dataclass
class RecordedRequest:
    """One call as the fake received it. Headers are kept but left out of repr()."""

    method: str
    path: str
    api_version: str
    model: str
    body: dict[str, Any]
    headers: dict[str, str] = field(repr=False)
    at: float
    outcome: str = ""
    usage: dict[str, Any] | None = None  # the answer's usageMetadata, once answered

    @property
    def parts(self) -> list[dict[str, Any]]:
        contents = self.body.get("contents") or []
        return [part for content in contents for part in (content.get("parts") or [])]

    @property
    def prompt(self) -> str:
        return "\n".join(str(part["text"]) for part in self.parts if "text" in part)

    @property
    def inline_images(self) -> list[tuple[str, bytes]]:
        """(mime type, bytes) of every inline part, in request order."""
        return [
            (str(blob.get("mimeType") or blob.get("mime_type") or ""), decode_base64(text))
            for blob, text in self._inline_blobs()
        ]

    @property
    def image_count(self) -> int:
        """How many inline parts the request has (none decoded)."""
        return len(self._inline_blobs())

    def _inline_blobs(self) -> list[tuple[dict[str, Any], str]]:
        blobs = (part.get("inlineData") or part.get("inline_data") for part in self.parts)
        return [(blob, str(blob.get("data") or "")) for blob in blobs if blob]

    @property
    def generation_config(self) -> dict[str, Any]:
        config = self.body.get("generationConfig") or self.body.get("generation_config") or {}
        return dict(config)

    @property
    def wants_json(self) -> bool:
        """A text request in JSON mode (the story writer's), not an image request."""
        config = self.generation_config
        mime = config.get("responseMimeType") or config.get("response_mime_type")
        return mime == "application/json" or "responseSchema" in config

    @property
    def api_key(self) -> str | None:
        return self.headers.get("x-goog-api-key") or self.headers.get("X-Goog-Api-Key")


@dataclass
class _Rule:
    substring: str
    fault: Fault
    remaining: int | None


@dataclass(frozen=True)
class _StaticRoute:
    status: int
    data: bytes
    content_type: str


class FakeGeminiServer(BackgroundServer):
    """Fake Gemini `generateContent` endpoint with fault injection. See the module doc."""

    thread_name = "fake-gemini"

    def __init__(self, api_key: str | None = None, answer_format: AnswerFormat = "2026") -> None:
        super().__init__()
        self.api_key = api_key
        self.answer_format: AnswerFormat = answer_format
        self._accepted_key = api_key
        self._models: dict[str, str] = dict(KNOWN_MODELS)
        self.model_lookups = 0
        self._requests: list[RecordedRequest] = []
        self._queue: deque[Fault] = deque()
        self._rules: list[_Rule] = []
        self._latency = 0.0
        self._quota: int | None = None
        self._quota_window = 60.0
        self._quota_hits: deque[float] = deque()
        self.quota_rejections = 0
        self._static: dict[str, _StaticRoute] = {}
        self._static_hits: dict[str, int] = {}

    # ----- configuration (any thread) -----

    def fail_next(self, n: int, fault: Fault) -> None:
        """The next `n` calls (that no page rule catches) get `fault`."""
        with self._lock:
            self._queue.extend([fault] * n)

    def queue(self, *faults: Fault) -> None:
        """The next calls get these faults, in order."""
        with self._lock:
            self._queue.extend(faults)

    def fail_when(self, prompt_contains: str, fault: Fault, times: int | None = None) -> None:
        """Calls whose prompt contains `prompt_contains` get `fault` (`times` times, or always)."""
        with self._lock:
            self._rules.append(_Rule(prompt_contains, fault, times))

    def set_latency(self, seconds: float) -> None:
        """Delay every answer by `seconds`."""
        with self._lock:
            self._latency = seconds

    def set_quota(self, per_window: int | None, window_seconds: float = 60.0) -> None:
        """Answer 429 (with RetryInfo) to calls beyond `per_window` in a sliding window."""
        with self._lock:
            self._quota = per_window
            self._quota_window = window_seconds
            self._quota_hits.clear()

    def reset_faults(self) -> None:
        with self._lock:
            self._queue.clear()
            self._rules.clear()
            self._latency = 0.0
            self._quota = None
            self._quota_hits.clear()

    def add_model(self, name: str, display_name: str = "") -> None:
        with self._lock:
            self._models[name] = display_name or name

    def retire_model(self, name: str) -> None:
        """Google shut it down: `models.get` and `generateContent` answer 404."""
        with self._lock:
            self._models.pop(name, None)

    def revoke_key(self) -> None:
        """The key the server was started with is refused from now on (400 API_KEY_INVALID)."""
        with self._lock:
            self.api_key = "revoked-" + (self._accepted_key or "")

    def restore_key(self) -> None:
        with self._lock:
            self.api_key = self._accepted_key

    def add_image(self, path: str, data: bytes, content_type: str = "image/png") -> str:
        """Serve `data` at GET `path`; returns its URL."""
        return self._add_static(path, _StaticRoute(200, data, content_type))

    def add_error(self, path: str, status: int = 404) -> str:
        """GET `path` answers `status`; returns its URL."""
        return self._add_static(path, _StaticRoute(status, b"fake error", "text/plain"))

    # ----- inspection (any thread) -----

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def call_count(self) -> int:
        with self._lock:
            return len(self._requests)

    def calls_with(self, prompt_contains: str) -> int:
        return sum(1 for request in self.requests if prompt_contains in request.prompt)

    def static_hits(self, path: str) -> int:
        with self._lock:
            return self._static_hits.get("/" + path.lstrip("/"), 0)

    # ----- the app -----

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_post("/{version}/models/{call}", self._generate)
        app.router.add_get("/{version:v1[a-z0-9]*}/models", self._list_models)
        app.router.add_get("/{version:v1[a-z0-9]*}/models/{model}", self._get_model)
        app.router.add_get("/{path:.*}", self._serve_static)
        return app

    def _add_static(self, path: str, route: _StaticRoute) -> str:
        path = "/" + path.lstrip("/")
        with self._lock:
            self._static[path] = route
        return self.url(path)

    async def _serve_static(self, request: web.Request) -> web.StreamResponse:
        with self._lock:
            route = self._static.get(request.path)
            self._static_hits[request.path] = self._static_hits.get(request.path, 0) + 1
        if route is None:
            return web.Response(status=404, text="not found")
        return web.Response(status=route.status, body=route.data, content_type=route.content_type)

    def _model_json(self, name: str, display_name: str) -> dict[str, Any]:
        return {
            "name": f"models/{name}",
            "displayName": display_name,
            "version": "001",
            "inputTokenLimit": 131072,
            "outputTokenLimit": 32768,
            "supportedGenerationMethods": ["generateContent", "countTokens"],
            "thinking": True,
        }

    def _refused_key(self, request: web.Request) -> web.Response | None:
        with self._lock:
            expected = self.api_key
        given = request.headers.get("x-goog-api-key")
        if expected is not None and given != expected:
            return _http_fault(_invalid_key())
        return None

    async def _get_model(self, request: web.Request) -> web.StreamResponse:
        with self._lock:
            self.model_lookups += 1
        if (refused := self._refused_key(request)) is not None:
            return refused
        name = request.match_info["model"].removeprefix("models/")
        with self._lock:
            display = self._models.get(name)
        if display is None:
            return _model_not_found(name, request.match_info["version"])
        return web.json_response(self._model_json(name, display))

    async def _list_models(self, request: web.Request) -> web.StreamResponse:
        if (refused := self._refused_key(request)) is not None:
            return refused
        with self._lock:
            known = list(self._models.items())
        return web.json_response({"models": [self._model_json(n, d) for n, d in known]})

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        model, _, method = request.match_info["call"].partition(":")
        if method != "generateContent":
            return _google_error(404, f"Method {method!r} is not faked.")
        with self._lock:
            known = model in self._models
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return _google_error(400, "Invalid JSON payload received.")
        record = RecordedRequest(
            method=request.method,
            path=request.path,
            api_version=request.match_info["version"],
            model=model,
            body=body if isinstance(body, dict) else {},
            headers=dict(request.headers),
            at=time.monotonic(),
        )
        fault, latency = self._choose(record)
        if not known and fault.kind != "http":
            fault = _not_found_fault(model, record.api_version)
        record.outcome = fault.kind if fault.kind != "http" else f"http {fault.code}"
        with self._lock:
            self._requests.append(record)
        started = time.monotonic()
        answer = None
        if fault.kind not in ("reset", "http"):
            # Drawn while the model "works" (its latency), in a thread: calls answered at
            # once are not one drawing after another past their latency.
            answer = await asyncio.to_thread(_response_body, record, fault, self.answer_format)
        remaining = latency - (time.monotonic() - started)
        if remaining > 0 and not await self.pause(remaining):
            return _google_error(503, "The fake server is shutting down.")
        return await self._answer(request, record, fault, answer)

    def _choose(self, record: RecordedRequest) -> tuple[Fault, float]:
        with self._lock:
            latency = self._latency
            if self.api_key is not None and record.api_key != self.api_key:
                return _invalid_key(), latency
            quota_fault = self._quota_fault()
            if quota_fault is not None:
                return quota_fault, latency
            rule_fault = self._rule_fault(record.prompt)
            if rule_fault is not None:
                return rule_fault, latency
            if self._queue:
                return self._queue.popleft(), latency
        return Fault.ok(), latency

    def _quota_fault(self) -> Fault | None:
        if self._quota is None:
            return None
        now = time.monotonic()
        while self._quota_hits and now - self._quota_hits[0] >= self._quota_window:
            self._quota_hits.popleft()
        if len(self._quota_hits) < self._quota:
            self._quota_hits.append(now)
            return None
        self.quota_rejections += 1
        wait = self._quota_window - (now - self._quota_hits[0])
        return Fault.rate_limited(
            retry_delay=f"{max(wait, 0.001):.3f}s",
            message="Quota exceeded for metric: generate_content requests per minute.",
        )

    def _rule_fault(self, prompt: str) -> Fault | None:
        for rule in self._rules:
            if rule.substring in prompt and (rule.remaining is None or rule.remaining > 0):
                if rule.remaining is not None:
                    rule.remaining -= 1
                return rule.fault
        return None

    async def _answer(
        self,
        request: web.Request,
        record: RecordedRequest,
        fault: Fault,
        body: dict[str, Any] | None = None,
    ) -> web.StreamResponse:
        if fault.kind == "reset":
            return await self.reset_connection(request)
        if fault.kind == "http":
            return _http_fault(fault)
        if fault.kind == "delay" and not await self.pause(fault.seconds):
            return _google_error(503, "The fake server is shutting down.")
        if body is None:
            body = _response_body(record, fault, self.answer_format)
        record.usage = body.get("usageMetadata")  # what the answer says it used
        return web.json_response(body)


def decode_base64(text: str) -> bytes:
    """Protobuf JSON bytes: standard or URL-safe alphabet (the SDK sends URL-safe), any padding."""
    normalized = text.replace("-", "+").replace("_", "/").rstrip("=")
    return base64.b64decode(normalized + "=" * (-len(normalized) % 4), validate=True)


def _google_error(
    code: int, message: str, status: str | None = None, details: list[dict[str, Any]] | None = None
) -> web.Response:
    error: dict[str, Any] = {
        "code": code,
        "message": message,
        "status": status or GOOGLE_STATUS.get(code, "UNKNOWN"),
    }
    if details:
        error["details"] = details
    return web.json_response({"error": error}, status=code)


def _http_fault(fault: Fault) -> web.Response:
    if fault.raw_body is not None:
        response = web.Response(
            status=fault.code, text=fault.raw_body, content_type=fault.content_type
        )
    else:
        details: list[dict[str, Any]] = []
        if fault.retry_delay is not None:
            details.append({"@type": RETRY_INFO_TYPE, "retryDelay": fault.retry_delay})
        if fault.reason:
            details.append(
                {
                    "@type": ERROR_INFO_TYPE,
                    "reason": fault.reason,
                    "domain": "googleapis.com",
                    "metadata": {"service": "generativelanguage.googleapis.com"},
                }
            )
        response = _google_error(fault.code, fault.message, fault.status, details or None)
    if fault.retry_after_header is not None:
        response.headers["Retry-After"] = fault.retry_after_header
    return response


def _invalid_key() -> Fault:
    return Fault.bad_key()


def _not_found_fault(model: str, version: str) -> Fault:
    return Fault.http(
        404,
        f"models/{model} is not found for API version {version}, or is not supported for "
        "generateContent. Call ListModels to see the list of available models and their "
        "supported methods.",
    )


def _model_not_found(model: str, version: str) -> web.Response:
    return _http_fault(_not_found_fault(model, version))


def default_story(record: RecordedRequest) -> str:
    """A valid story for a JSON-mode request: one entry per photo sent (page order)."""
    count = max(1, record.image_count)
    pages = [
        {
            "page_number": n,
            "text": "The title" if n == 1 else f"Page {n}: the child plays outside. What fun!",
            "illustration_notes": f"bright and happy, scene {n}",
        }
        for n in range(1, count + 1)
    ]
    return json.dumps({"title": "The title", "pages": pages})


def _story_body(
    record: RecordedRequest, text: str, reason: str, answer_format: AnswerFormat
) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"text": text}]
    if answer_format == "2026":
        parts = [{"text": THOUGHT_TEXT, "thought": True}, {**parts[0], **_signature()}]
    return {
        "candidates": [
            {
                "content": {"role": "model", "parts": parts},
                "finishReason": reason,
                "index": 0,
            }
        ],
        "usageMetadata": _usage(record, answer_format, image=False),
        "modelVersion": record.model,
    }


def _response_body(
    record: RecordedRequest, fault: Fault, answer_format: AnswerFormat = "2026"
) -> dict[str, Any]:
    if fault.kind == "story":
        return _story_body(record, fault.text or "", fault.reason, answer_format)
    if record.wants_json and fault.kind in ("ok", "delay"):
        return _story_body(record, default_story(record), "STOP", answer_format)
    usage = _usage(record, answer_format, image=fault.kind in ("ok", "delay", "bad_image"))
    if fault.kind == "blocked":
        return {"promptFeedback": {"blockReason": fault.reason}, "usageMetadata": usage}
    parts: list[dict[str, Any]] = []
    if answer_format == "2026":
        parts.append({"text": THOUGHT_TEXT, "thought": True})
    if fault.text is not None:
        parts.append({"text": fault.text})
    finish_reason = "STOP"
    if fault.kind == "finish":
        finish_reason = fault.reason
    elif fault.kind == "bad_image":
        data = fault.data if fault.data is not None else drawn_png(record)
        parts.append(_final(_inline(fault.mime_type, data), answer_format))
    else:
        if fault.thought_image:
            parts.append({**_inline("image/png", flat_png()), "thought": True})
        for n in range(fault.interim_images):
            flag = {"thought": True} if fault.interim_flagged else {}
            parts.append({"text": f"Draft {n + 1}: checking the composition.", **flag})
            parts.append({**_inline("image/png", interim_png(n)), **flag})
        parts.append(_final(_inline("image/png", drawn_png(record)), answer_format))
    candidate: dict[str, Any] = {"finishReason": finish_reason, "index": 0}
    if parts:
        candidate["content"] = {"role": "model", "parts": parts}
    return {
        "candidates": [candidate],
        "usageMetadata": usage,
        "modelVersion": record.model,
        "responseId": f"fake-{int(record.at * 1000)}",
    }


def _signature() -> dict[str, str]:
    return {"thoughtSignature": THOUGHT_SIGNATURE}


def _final(part: dict[str, Any], answer_format: AnswerFormat) -> dict[str, Any]:
    return {**part, **_signature()} if answer_format == "2026" else part


def interim_png(n: int) -> bytes:
    """The `n`th interim draft of a thinking answer: a flat tile, one colour per draft."""
    return flat_png(color=(20 + 60 * n, 200, 220))


def _inline(mime_type: str, data: bytes) -> dict[str, Any]:
    return {"inlineData": {"mimeType": mime_type, "data": base64.b64encode(data).decode()}}


def image_tokens(record: RecordedRequest) -> int:
    """Output tokens of the image the request asks for (by its `imageSize`)."""
    config = record.generation_config.get("imageConfig") or {}
    return IMAGE_TOKENS.get(str(config.get("imageSize") or "1K"), IMAGE_TOKENS["1K"])


PROMPT_TEXT_TOKENS = 180
IMAGE_INPUT_TOKENS = 560  # per inline image of the request
THOUGHT_TOKENS = 240
STORY_TEXT_TOKENS = 300


def _usage(record: RecordedRequest, answer_format: AnswerFormat, *, image: bool) -> dict[str, Any]:
    if answer_format == "2025":
        return {"promptTokenCount": 600, "candidatesTokenCount": 1290, "totalTokenCount": 1890}
    images_in = record.image_count * IMAGE_INPUT_TOKENS
    output = image_tokens(record) if image else STORY_TEXT_TOKENS
    modality = "IMAGE" if image else "TEXT"
    return {
        "promptTokenCount": PROMPT_TEXT_TOKENS + images_in,
        "candidatesTokenCount": output,
        "thoughtsTokenCount": THOUGHT_TOKENS,
        "totalTokenCount": PROMPT_TEXT_TOKENS + images_in + output + THOUGHT_TOKENS,
        "promptTokensDetails": [
            {"modality": "TEXT", "tokenCount": PROMPT_TEXT_TOKENS},
            {"modality": "IMAGE", "tokenCount": images_in},
        ],
        "candidatesTokensDetails": [{"modality": modality, "tokenCount": output}],
    }


def drawn_png(record: RecordedRequest, size: int = 256) -> bytes:
    """A real picture: the request's first inline image, posterised; a flat tile otherwise.
    The same image draws the same picture, drawn once (the fake's CPU is not the
    pipeline's: a bench's pages often share a photo)."""
    blobs = record._inline_blobs()
    key = (blobs[0][1] if blobs else "", size)
    if (drawn := _DRAWN.get(key)) is not None:
        return drawn
    source = _first_image(record)
    if source is None:
        return flat_png()
    source.thumbnail((size, size))
    picture = ImageOps.posterize(source.convert("RGB"), 2)
    out = io.BytesIO()
    picture.save(out, format="PNG")
    if len(_DRAWN) >= _DRAWINGS_KEPT:
        _DRAWN.pop(next(iter(_DRAWN)), None)
    _DRAWN[key] = out.getvalue()
    return _DRAWN[key]


_DRAWINGS_KEPT = 16
_DRAWN: dict[tuple[str, int], bytes] = {}  # by the first inline part's base64 text, size


def flat_png(size: int = 64, color: tuple[int, int, int] = (200, 120, 40)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (size, size), color).save(out, format="PNG")
    return out.getvalue()


def _first_image(record: RecordedRequest) -> Image.Image | None:
    for _, data in record.inline_images:
        try:
            with Image.open(io.BytesIO(data)) as image:
                image.load()
                return image.copy()
        except (OSError, SyntaxError, binascii.Error):
            continue
    return None
