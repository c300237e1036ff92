"""Gemini image models (through `google-genai`) as an `Illustrator`.

The SDK's own retries are switched off: Temporal owns retries, so every failure is turned
into one of the provider errors of `base.py` at once, with a short, secret-free reason.
"""

from __future__ import annotations

import asyncio
import enum
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

import httpx
from google import genai
from google.genai import errors, types

from storywink.images import NotAnImage, image_mime_type
from storywink.providers.base import (
    ContentRefused,
    FleetFault,
    GeneratedImage,
    IllustrationJob,
    PermanentError,
    ProviderError,
    RateLimited,
    SourceImage,
    TokenUsage,
    TransientError,
)
from storywink.providers.tls import verifying_context
from storywink.redact import redact, shorten

SAFETY_REASONS: Final = frozenset(
    {
        "SAFETY",
        "IMAGE_SAFETY",
        "PROHIBITED_CONTENT",
        "IMAGE_PROHIBITED_CONTENT",
        "BLOCKLIST",
        "SPII",
    }
)
COPYRIGHT_REASONS: Final = frozenset({"RECITATION", "IMAGE_RECITATION"})
TRANSIENT_HTTP: Final = frozenset({408, 429, 500, 502, 503, 504})

_MESSAGE_LIMIT = 200
PROBE_SECONDS: Final = 10.0
_SNIPPET_LIMIT = 120
_RETRY_INFO = "google.rpc.RetryInfo"
_ERROR_INFO = "google.rpc.ErrorInfo"
# ErrorInfo reasons of a key the API refuses (a bad, revoked or expired key).
KEY_REFUSED_REASONS: Final = frozenset({"API_KEY_INVALID", "API_KEY_EXPIRED"})
_MIME_ALIASES = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg"}
_SSL_REPR = re.compile(r"\s*ssl:<[^>]*>")  # aiohttp puts a context repr in connect errors


def _transport_errors() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """(timeouts, connection errors) of whichever HTTP stacks the SDK may use."""
    timeouts: list[type[BaseException]] = [TimeoutError, httpx.TimeoutException]
    connection: list[type[BaseException]] = [OSError, httpx.TransportError]
    try:
        import httpx2  # the SDK's default transport from google-genai 2.x on
    except ImportError:
        pass
    else:
        timeouts.append(httpx2.TimeoutException)
        connection.append(httpx2.TransportError)
    try:
        import aiohttp  # used by the SDK whenever it is installed
    except ImportError:
        pass
    else:
        connection += [aiohttp.ClientConnectionError, aiohttp.ClientPayloadError]
    return tuple(timeouts), tuple(connection)


# asyncio.TimeoutError is the builtin TimeoutError (3.11+); aiohttp's timeouts derive from it.
TIMEOUT_ERRORS, CONNECTION_ERRORS = _transport_errors()


def build_gemini_client(api_key: str, base_url: str | None, timeout_seconds: float) -> genai.Client:
    """A client that gives up after `timeout_seconds` and never retries on its own."""
    tls = verifying_context()
    options = types.HttpOptions(
        base_url=base_url or None,
        timeout=max(1, round(timeout_seconds * 1000)),  # milliseconds
        retry_options=types.HttpRetryOptions(attempts=1),
        client_args={"verify": tls},
        async_client_args={"verify": tls, "ssl": tls},  # httpx's name, aiohttp's name
    )
    return genai.Client(api_key=api_key, http_options=options)


async def generate(
    client: genai.Client,
    secrets: Sequence[str],
    model: str,
    contents: list[types.Content],
    config: types.GenerateContentConfig,
) -> types.GenerateContentResponse:
    """One model call; every way it can fail as a `ProviderError` with a short,
    secret-free reason (retried or not by its type)."""
    try:
        return await client.aio.models.generate_content(
            model=model, contents=contents, config=config
        )
    except errors.APIError as exc:
        raise http_error(exc, secrets) from None
    except (errors.UnknownApiResponseError, json.JSONDecodeError):
        raise TransientError("unreadable response from the model") from None
    except TIMEOUT_ERRORS:
        raise TransientError("timeout") from None
    except CONNECTION_ERRORS as exc:
        raise TransientError(f"connection error: {_describe(exc, secrets)}") from None


class GeminiIllustrator:
    """Redraws a page's photo in the style of a reference image with a Gemini image model."""

    name = "gemini"
    uses_style_reference = True

    def __init__(self, client: genai.Client, model: str, image_size: str) -> None:
        self._client = client
        self._model = model
        self._image_size = image_size
        self._secrets = client_secrets(client)

    def warm_up(self) -> None:
        """Build the SDK's request and response models now, at worker start, with no network
        call: pydantic builds them on first use, and the tens of milliseconds that costs would
        otherwise delay the first model call after its slot (a late call costs a 429)."""
        blank = SourceImage(data=b"", mime_type="image/png")
        job = IllustrationJob(
            prompt="",
            photo=blank,
            style_reference=blank,
            style_key="",
            text=None,
            title="",
            is_title_page=False,
        )
        request = getattr(types, "_GenerateContentParameters", None)  # the SDK's own step
        if request is not None:
            request(model=self._model, contents=build_contents(job), config=self._config())
        types.GenerateContentResponse.model_rebuild()

    async def probe(self) -> bool:
        """Whether the API knows the model for this key now (`models.get`: no generation,
        no cost): how a worker paused by a fleet fault finds it cleared."""
        try:
            await asyncio.wait_for(self._client.aio.models.get(model=self._model), PROBE_SECONDS)
        except (errors.APIError, *TIMEOUT_ERRORS, *CONNECTION_ERRORS):  # type: ignore[misc]
            return False
        return True

    async def illustrate(self, job: IllustrationJob) -> GeneratedImage:
        response = await generate(
            self._client, self._secrets, self._model, build_contents(job), self._config()
        )
        # Reading the image decodes it (storywink.images): not on the event loop.
        return await asyncio.to_thread(read_image, response, self._secrets)

    def _config(self) -> types.GenerateContentConfig:
        return types.GenerateContentConfig(
            response_modalities=["IMAGE", "TEXT"],
            image_config=types.ImageConfig(aspect_ratio="1:1", image_size=self._image_size or None),
        )


def build_contents(job: IllustrationJob) -> list[types.Content]:
    """Prompt, then image 1 (the photo), then image 2 (the style reference) when there is one."""
    images: list[SourceImage] = [job.photo]
    if job.style_reference is not None:
        images.append(job.style_reference)
    parts = [types.Part.from_text(text=job.prompt)]
    parts += [types.Part.from_bytes(data=image.data, mime_type=image.mime_type) for image in images]
    return [types.Content(role="user", parts=parts)]


# ----- reading the answer -----


def read_image(
    response: types.GenerateContentResponse, secrets: Sequence[str] = ()
) -> GeneratedImage:
    """`_read_image`, its errors carrying the answer's usage (the call was billed)."""
    try:
        return _read_image(response, secrets)
    except ProviderError as error:
        error.usage = read_usage(response)
        raise


def _read_image(response: types.GenerateContentResponse, secrets: Sequence[str]) -> GeneratedImage:
    """The final image, or the error that says why there is none.

    A thinking image model may send interim images before the final one, flagged
    `thought` or not; Google's image-generation docs: the last image is the rendered
    final. So the last image not flagged `thought` is the page's picture. Thought parts
    and `thought_signature`s are never kept (they are only for a multi-turn chat)."""
    candidate = response.candidates[0] if response.candidates else None
    parts = _parts(candidate)
    final = None
    for part in parts:
        blob = part.inline_data
        if part.thought or blob is None or not blob.data:
            continue
        if (blob.mime_type or "image/").lower().startswith("image/"):
            final = blob
    if final is not None and final.data:
        image = _checked_image(final.data, final.mime_type)
        return GeneratedImage(image.data, image.mime_type, usage=read_usage(response))
    raise _missing_image(response, candidate, parts, secrets)


def read_usage(response: types.GenerateContentResponse) -> TokenUsage | None:
    """`usageMetadata`: prompt, answer and thinking tokens, the answer's per modality
    (`candidatesTokensDetails`, sent by today's models; absent from 2025's answers)."""
    usage = response.usage_metadata
    if usage is None:
        return None
    by_modality = {
        enum_name(detail.modality): int(detail.token_count or 0)
        for detail in usage.candidates_tokens_details or []
        if detail.modality is not None
    }
    return TokenUsage(
        prompt_tokens=int(usage.prompt_token_count or 0),
        output_tokens=int(usage.candidates_token_count or 0),
        thought_tokens=int(usage.thoughts_token_count or 0),
        output_by_modality=by_modality,
    )


def _parts(candidate: types.Candidate | None) -> list[types.Part]:
    if candidate is None or candidate.content is None:
        return []
    return list(candidate.content.parts or [])


def _checked_image(data: bytes, declared: str | None) -> GeneratedImage:
    try:
        actual = image_mime_type(data)
    except NotAnImage as exc:
        raise TransientError(
            f"model sent {declared or 'data'} that is not an image: {exc}"
        ) from None
    claimed = _MIME_ALIASES.get((declared or "").lower(), (declared or "").lower())
    if claimed and claimed != actual:
        raise TransientError(f"model declared {claimed} but sent {actual}")
    return GeneratedImage(data=data, mime_type=actual)


def _missing_image(
    response: types.GenerateContentResponse,
    candidate: types.Candidate | None,
    parts: Sequence[types.Part],
    secrets: Sequence[str],
) -> ProviderError:
    feedback = response.prompt_feedback
    if feedback is not None and feedback.block_reason is not None:
        return ContentRefused(f"blocked: {enum_name(feedback.block_reason)}")
    reason = enum_name(candidate.finish_reason) if candidate is not None else ""
    if reason in SAFETY_REASONS:
        return ContentRefused(f"safety: {reason}")
    if reason in COPYRIGHT_REASONS:
        return ContentRefused(f"copyright: {reason}")
    text = " ".join(part.text for part in parts if part.text and not part.thought)
    if not reason and not text:
        # Nothing to go on: most likely a glitch, so let it be retried.
        return TransientError("empty response from the model")
    refusal = f"no image: {reason or 'FINISH_REASON_UNSPECIFIED'}"
    snippet = shorten(redact(text, secrets), _SNIPPET_LIMIT)
    return ContentRefused(f"{refusal}: {snippet}" if snippet else refusal)


def enum_name(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, enum.Enum):
        return str(value.value)
    return str(value)


# ----- errors -----


def http_error(exc: errors.APIError, secrets: Sequence[str] = ()) -> ProviderError:
    """Map an HTTP error answer to a provider error with a short reason."""
    code = int(exc.code or 0)
    status = f" {exc.status}" if exc.status else ""
    message = shorten(redact(str(exc.message or ""), secrets), _MESSAGE_LIMIT)
    reason = f"HTTP {code}{status}: {message}" if message else f"HTTP {code}{status}"
    if key_refused(exc):
        return FleetFault(reason, "GEMINI_API_KEY")
    if code == 404:  # the model: shut down, or a wrong name
        return FleetFault(reason, "the model setting")
    if 400 <= code < 500 and code not in TRANSIENT_HTTP:
        return PermanentError(reason)
    if code == 429:
        return RateLimited(reason, retry_after=retry_delay(exc))
    return TransientError(reason, retry_after=retry_delay(exc))


def key_refused(exc: errors.APIError) -> bool:
    """The API refused the key itself: 401, 403, or (as Gemini answers a bad or revoked
    key) 400 `INVALID_ARGUMENT` with an `ErrorInfo` reason `API_KEY_INVALID`."""
    code = int(exc.code or 0)
    if code in (401, 403):
        return True
    if code != 400:
        return False
    reasons = {
        str(detail.get("reason", ""))
        for detail in _error_details(exc.details)
        if str(detail.get("@type", "")).endswith(_ERROR_INFO)
    }
    return bool(reasons & KEY_REFUSED_REASONS) or "API key not valid" in str(exc.message or "")


def retry_delay(exc: errors.APIError) -> float | None:
    """Seconds from the error's `google.rpc.RetryInfo`, else from a `Retry-After` header."""
    for detail in _error_details(exc.details):
        if str(detail.get("@type", "")).endswith(_RETRY_INFO):
            delay = parse_duration(detail.get("retryDelay"))
            if delay is not None:
                return delay
    return _retry_after_header(exc.response)


def _error_details(body: object) -> list[Mapping[str, Any]]:
    error = body.get("error", body) if isinstance(body, Mapping) else None
    details = error.get("details") if isinstance(error, Mapping) else None
    if not isinstance(details, list):
        return []
    return [detail for detail in details if isinstance(detail, Mapping)]


def parse_duration(value: object) -> float | None:
    """A protobuf Duration as JSON ("17s", "1.5s") or as {"seconds": .., "nanos": ..}."""
    try:
        if isinstance(value, str) and value.endswith("s"):
            seconds = float(value[:-1])
        elif isinstance(value, Mapping):
            seconds = float(value.get("seconds", 0)) + float(value.get("nanos", 0)) / 1e9
        else:
            return None
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def _retry_after_header(response: object) -> float | None:
    headers = getattr(response, "headers", None)
    value = headers.get("Retry-After") if isinstance(headers, Mapping) else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: rare, and RetryInfo is the documented way


def _describe(exc: BaseException, secrets: Sequence[str]) -> str:
    text = _SSL_REPR.sub("", redact(str(exc), secrets))
    return shorten(f"{type(exc).__name__}: {text}" if text else type(exc).__name__, 120)


def client_secrets(client: genai.Client) -> tuple[str, ...]:
    # The key lives in the SDK's private client; reading it lets us scrub it verbatim.
    api_key = getattr(getattr(client, "_api_client", None), "api_key", None)
    return (api_key,) if isinstance(api_key, str) else ()
