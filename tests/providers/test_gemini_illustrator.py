"""GeminiIllustrator against the fake Gemini server, through the real google-genai SDK.

Every test runs on both transports the SDK may pick: aiohttp (used whenever it is
installed, as in dev) and httpx (used in a production install without aiohttp).
"""

from __future__ import annotations

import io
import socket
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import httpx2
import pytest
from google import genai
from google.genai import types
from PIL import Image

from storywink.images import image_mime_type
from storywink.providers.base import (
    ContentRefused,
    IllustrationJob,
    PermanentError,
    ProviderError,
    SourceImage,
    TransientError,
)
from storywink.providers.gemini import GeminiIllustrator, build_gemini_client, parse_duration
from tests.support.fakes.gemini_server import (
    IMAGE_TOKENS,
    THOUGHT_SIGNATURE,
    THOUGHT_TOKENS,
    FakeGeminiServer,
    Fault,
    drawn_png,
    interim_png,
)

# Shaped like a real Google key so the pattern scrubber is exercised too.
API_KEY = "AIzaSyFAKE-storywink-LEAK-CANARY-0123456789"
PLAIN_KEY = "sw-plain-test-key-LEAK-CANARY-77"
MODEL = "gemini-3.1-flash-image"
TIMEOUT_SECONDS = 1.0


def _png(color: tuple[int, int, int], size: int = 48) -> bytes:
    out = io.BytesIO()
    image = Image.new("RGB", (size, size), color)
    image.paste((255, 255, 255), (8, 8, 24, 24))
    image.save(out, format="PNG")
    return out.getvalue()


def _jpeg(color: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 40), color).save(out, format="JPEG")
    return out.getvalue()


PHOTO = SourceImage(_png((30, 160, 90)), "image/png")
STYLE = SourceImage(_jpeg((90, 30, 160)), "image/jpeg")


def _job(prompt: str = "Redraw image 1 in the style of image 2. Page 1.") -> IllustrationJob:
    return IllustrationJob(
        prompt=prompt,
        photo=PHOTO,
        style_reference=STYLE,
        style_key="vignette",
        text="Mia found a shell.",
        title="Mia at the Sea",
        is_title_page=False,
    )


def _client(base_url: str, transport: str, api_key: str = API_KEY) -> genai.Client:
    if transport == "aiohttp":
        return build_gemini_client(api_key, base_url, TIMEOUT_SECONDS)
    # What build_gemini_client yields when aiohttp is not installed: the httpx path.
    options = types.HttpOptions(
        base_url=base_url,
        timeout=int(TIMEOUT_SECONDS * 1000),
        retry_options=types.HttpRetryOptions(attempts=1),
        async_client_args={"transport": httpx2.AsyncHTTPTransport()},
    )
    return genai.Client(api_key=api_key, http_options=options)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def gemini() -> Iterator[FakeGeminiServer]:
    with FakeGeminiServer(api_key=API_KEY) as server:
        yield server


@pytest.fixture(params=["aiohttp", "httpx"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def illustrator(gemini: FakeGeminiServer, transport: str) -> AsyncIterator[GeminiIllustrator]:
    client = _client(gemini.base_url, transport)
    yield GeminiIllustrator(client, MODEL, "1K")
    await client.aio.aclose()


async def _failure(
    illustrator: GeminiIllustrator, job: IllustrationJob | None = None
) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await illustrator.illustrate(job or _job())
    return caught.value


# ----- the happy path and the request on the wire -----


async def test_returns_the_generated_png(
    illustrator: GeminiIllustrator, gemini: FakeGeminiServer
) -> None:
    image = await illustrator.illustrate(_job())

    assert image.mime_type == "image/png"
    assert image_mime_type(image.data) == "image/png"
    assert image.data == drawn_png(gemini.requests[0])


async def test_request_carries_prompt_both_images_and_image_config(
    illustrator: GeminiIllustrator, gemini: FakeGeminiServer
) -> None:
    job = _job()
    await illustrator.illustrate(job)

    [request] = gemini.requests
    assert request.path.endswith(f"/models/{MODEL}:generateContent")
    assert request.model == MODEL
    assert request.api_key == API_KEY
    assert request.prompt == job.prompt
    assert request.inline_images == [("image/png", PHOTO.data), ("image/jpeg", STYLE.data)]
    config = request.generation_config
    assert config["responseModalities"] == ["IMAGE", "TEXT"]
    assert config["imageConfig"] == {"aspectRatio": "1:1", "imageSize": "1K"}
    assert API_KEY not in repr(request)


async def test_without_style_reference_sends_only_the_photo(
    illustrator: GeminiIllustrator, gemini: FakeGeminiServer
) -> None:
    job = IllustrationJob("Draw the title page.", PHOTO, None, "vignette", None, "T", True)
    await illustrator.illustrate(job)

    assert gemini.requests[0].inline_images == [("image/png", PHOTO.data)]


async def test_skips_text_and_thought_parts(
    illustrator: GeminiIllustrator, gemini: FakeGeminiServer
) -> None:
    gemini.fail_next(1, Fault.ok(text="Here is your picture.", thought_image=True))

    image = await illustrator.illustrate(_job())

    assert image.data == drawn_png(gemini.requests[0])


# ----- today's answers: thinking, interim images, signatures, usage -----


@pytest.mark.parametrize("flagged", [True, False], ids=["interim-thought", "interim-unflagged"])
async def test_a_thinking_answer_keeps_the_final_image_not_an_interim_draft(
    illustrator: GeminiIllustrator, gemini: FakeGeminiServer, flagged: bool
) -> None:
    gemini.fail_next(1, Fault.thinking(2, flagged=flagged))

    image = await illustrator.illustrate(_job())

    assert image.data == drawn_png(gemini.requests[0])
    assert image.data not in (interim_png(0), interim_png(1))
    assert THOUGHT_SIGNATURE.encode() not in image.data


@pytest.mark.parametrize("size", ["512", "1K", "2K", "4K"])
async def test_usage_is_read_per_modality_at_each_size(gemini: FakeGeminiServer, size: str) -> None:
    client = _client(gemini.base_url, "aiohttp")
    image = await GeminiIllustrator(client, MODEL, size).illustrate(_job())
    await client.aio.aclose()

    assert gemini.requests[0].generation_config["imageConfig"]["imageSize"] == size
    assert image.usage is not None
    assert image.usage.output_by_modality == {"IMAGE": IMAGE_TOKENS[size]}
    assert image.usage.thought_tokens == THOUGHT_TOKENS
    assert image.usage.billed_output_tokens == IMAGE_TOKENS[size] + THOUGHT_TOKENS
    assert image.usage.prompt_tokens > 0


async def test_the_2025_answer_format_still_works(transport: str) -> None:
    with FakeGeminiServer(api_key=API_KEY, answer_format="2025") as server:
        client = _client(server.base_url, transport)
        image = await GeminiIllustrator(client, MODEL, "1K").illustrate(_job())
        await client.aio.aclose()

    assert image.data == drawn_png(server.requests[0])
    assert image.usage is not None and image.usage.output_tokens == 1290
    assert image.usage.output_by_modality == {}


async def test_a_refusal_reason_never_holds_the_thought_text_or_signature(
    illustrator: GeminiIllustrator, gemini: FakeGeminiServer
) -> None:
    gemini.fail_next(1, Fault.text_only("I cannot draw this picture."))

    error = await _failure(illustrator)

    assert error.reason == "no image: STOP: I cannot draw this picture."
    assert THOUGHT_SIGNATURE not in error.reason and "Planning" not in error.reason


# ----- content refusals -----


@pytest.mark.parametrize("reason", ["SAFETY", "PROHIBITED_CONTENT", "OTHER"])
async def test_block_reason_is_a_refusal(
    illustrator: GeminiIllustrator, gemini: FakeGeminiServer, reason: str
) -> None:
    gemini.fail_next(1, Fault.blocked(reason))

    error = await _failure(illustrator)

    assert isinstance(error, ContentRefused)
    assert error.reason == f"blocked: {reason}"


@pytest.mark.parametrize(
    ("finish_reason", "expected"),
    [
        ("SAFETY", "safety: SAFETY"),
        ("IMAGE_SAFETY", "safety: IMAGE_SAFETY"),
        ("PROHIBITED_CONTENT", "safety: PROHIBITED_CONTENT"),
        ("IMAGE_PROHIBITED_CONTENT", "safety: IMAGE_PROHIBITED_CONTENT"),
        ("BLOCKLIST", "safety: BLOCKLIST"),
        ("SPII", "safety: SPII"),
        ("RECITATION", "copyright: RECITATION"),
        ("IMAGE_RECITATION", "copyright: IMAGE_RECITATION"),
        ("NO_IMAGE", "no image: NO_IMAGE"),
        ("IMAGE_OTHER", "no image: IMAGE_OTHER"),
    ],
)
async def test_finish_reason_is_a_refusal(
    illustrator: GeminiIllustrator, gemini: FakeGeminiServer, finish_reason: str, expected: str
) -> None:
    gemini.fail_next(1, Fault.finish(finish_reason))

    error = await _failure(illustrator)

    assert isinstance(error, ContentRefused)
    assert error.reason == expected


async def test_text_only_answer_is_a_refusal_with_a_short_snippet(
    illustrator: GeminiIllustrator, gemini: FakeGeminiServer
) -> None:
    gemini.fail_next(1, Fault.text_only("I can't   draw\nthat. " + "x" * 300))

    error = await _failure(illustrator)

    assert isinstance(error, ContentRefused)
    assert error.reason.startswith("no image: STOP: I can't draw that. xxx")
    assert len(error.reason) <= len("no image: STOP: ") + 120


# ----- bad bytes -----


@pytest.mark.parametrize(
    "fault", [Fault.not_an_image("image/png"), Fault.mislabelled_image("image/jpeg")]
)
async def test_bytes_that_are_not_the_declared_image_are_transient(
    illustrator: GeminiIllustrator, gemini: FakeGeminiServer, fault: Fault
) -> None:
    gemini.fail_next(1, fault)

    error = await _failure(illustrator)

    assert isinstance(error, TransientError)
    assert "image" in error.reason


# ----- HTTP errors -----


async def test_429_with_retry_info_sets_retry_after(
    illustrator: GeminiIllustrator, gemini: FakeGeminiServer
) -> None:
    gemini.fail_next(1, Fault.rate_limited(retry_delay="2s"))

    error = await _failure(illustrator)

    assert isinstance(error, TransientError)
    assert error.retry_after == 2.0
    assert error.reason.startswith("HTTP 429 RESOURCE_EXHAUSTED: You exceeded your current quota")
    assert gemini.call_count == 1  # the SDK did not retry on its own


async def test_429_with_fractional_delay(
    illustrator: GeminiIllustrator, gemini: FakeGeminiServer
) -> None:
    gemini.fail_next(1, Fault.rate_limited(retry_delay="1.5s"))

    error = await _failure(illustrator)

    assert isinstance(error, TransientError)
    assert error.retry_after == 1.5


async def test_retry_after_header_is_the_fallback(
    illustrator: GeminiIllustrator, gemini: FakeGeminiServer
) -> None:
    gemini.fail_next(1, Fault.http(503, "overloaded", retry_after_header="7"))
    gemini.fail_next(1, Fault.rate_limited(retry_delay=None))

    overloaded = await _failure(illustrator)
    limited = await _failure(illustrator)

    assert isinstance(overloaded, TransientError)
    assert overloaded.retry_after == 7.0
    assert isinstance(limited, TransientError)
    assert limited.retry_after is None


@pytest.mark.parametrize("code", [408, 500, 502, 503, 504])
async def test_server_errors_are_transient(
    illustrator: GeminiIllustrator, gemini: FakeGeminiServer, code: int
) -> None:
    gemini.fail_next(1, Fault.http(code, "backend unavailable"))

    error = await _failure(illustrator)

    assert isinstance(error, TransientError)
    assert error.reason.startswith(f"HTTP {code} ")
    assert error.retry_after is None
    assert gemini.call_count == 1


async def test_html_error_page_is_transient_and_short(
    illustrator: GeminiIllustrator, gemini: FakeGeminiServer
) -> None:
    page = "<html><body>" + "Bad Gateway " * 100 + "</body></html>"
    gemini.fail_next(1, Fault.http(502, raw_body=page, content_type="text/html"))

    error = await _failure(illustrator)

    assert isinstance(error, TransientError)
    assert error.reason.startswith("HTTP 502")
    assert len(error.reason) < 260


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (400, "INVALID_ARGUMENT"),
        (401, "UNAUTHENTICATED"),
        (403, "PERMISSION_DENIED"),
        (404, "NOT_FOUND"),
    ],
)
async def test_client_errors_are_permanent(
    illustrator: GeminiIllustrator, gemini: FakeGeminiServer, code: int, status: str
) -> None:
    gemini.fail_next(1, Fault.http(code, "y" * 500))

    error = await _failure(illustrator)

    assert isinstance(error, PermanentError)
    assert error.reason.startswith(f"HTTP {code} {status}: yyy")
    assert len(error.reason) <= len(f"HTTP {code} {status}: ") + 200


async def test_wrong_api_key_is_permanent(gemini: FakeGeminiServer, transport: str) -> None:
    client = _client(gemini.base_url, transport, api_key=PLAIN_KEY)
    illustrator = GeminiIllustrator(client, MODEL, "1K")

    error = await _failure(illustrator)
    await client.aio.aclose()

    assert isinstance(error, PermanentError)
    assert (
        error.reason == "HTTP 400 INVALID_ARGUMENT: API key not valid. Please pass a valid API key."
    )


# ----- the network -----


async def test_hang_past_the_timeout_is_transient(
    illustrator: GeminiIllustrator, gemini: FakeGeminiServer
) -> None:
    gemini.fail_next(1, Fault.hang(10))
    started = time.monotonic()

    error = await _failure(illustrator)

    assert isinstance(error, TransientError)
    assert error.reason == "timeout"
    assert time.monotonic() - started < TIMEOUT_SECONDS + 1.5
    assert gemini.call_count == 1


async def test_latency_under_the_timeout_is_fine(
    illustrator: GeminiIllustrator, gemini: FakeGeminiServer
) -> None:
    gemini.fail_next(1, Fault.delay(0.2))

    image = await illustrator.illustrate(_job())

    assert image.mime_type == "image/png"


async def test_connection_reset_is_transient(
    illustrator: GeminiIllustrator, gemini: FakeGeminiServer
) -> None:
    gemini.fail_next(1, Fault.reset())

    error = await _failure(illustrator)

    assert isinstance(error, TransientError)
    assert error.reason.startswith("connection error: ")
    assert gemini.call_count == 1


async def test_connection_refused_is_transient(transport: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = _client(f"http://127.0.0.1:{port}", transport)

    error = await _failure(GeminiIllustrator(client, MODEL, "1K"))
    await client.aio.aclose()

    assert isinstance(error, TransientError)
    assert error.reason.startswith("connection error: ")


# ----- secrets -----


@pytest.mark.parametrize("key", [API_KEY, PLAIN_KEY])
async def test_api_key_never_appears_in_reasons(transport: str, key: str) -> None:
    faults = [
        Fault.http(403, f"Key {key} is blocked; see https://x.test/v1/models?key={key}&alt=json"),
        Fault.rate_limited(message=f"quota for x-goog-api-key: {key} exceeded"),
        Fault.http(400, f"API key {key} not valid"),
        Fault.reset(),
        Fault.hang(10),
        Fault.text_only(f"your key is {key}"),
    ]
    with FakeGeminiServer(api_key=key) as server:
        server.queue(*faults)
        client = _client(server.base_url, transport, api_key=key)
        illustrator = GeminiIllustrator(client, MODEL, "1K")
        reasons = [(await _failure(illustrator)).reason for _ in faults]
        await client.aio.aclose()

    assert server.call_count == len(faults)
    for reason in reasons:
        assert key not in reason
        assert "LEAK-CANARY" not in reason


# ----- fake server features other tests rely on -----


async def test_page_rule_and_quota(
    illustrator: GeminiIllustrator, gemini: FakeGeminiServer
) -> None:
    gemini.fail_when("Page 2", Fault.finish("IMAGE_SAFETY"), times=1)
    gemini.set_quota(2, window_seconds=60.0)

    await illustrator.illustrate(_job("Page 1"))
    refused = await _failure(illustrator, _job("Page 2"))
    limited = await _failure(illustrator, _job("Page 3"))

    assert isinstance(refused, ContentRefused)
    assert isinstance(limited, TransientError)
    assert limited.retry_after is not None
    assert 0 < limited.retry_after <= 60
    assert gemini.quota_rejections == 1
    assert gemini.calls_with("Page 2") == 1


def test_static_images_and_errors(gemini: FakeGeminiServer) -> None:
    photo_url = gemini.add_image("/photos/p1.png", PHOTO.data)
    missing_url = gemini.add_error("/photos/gone.png", 404)
    broken_url = gemini.add_error("/photos/broken.png", 500)

    with httpx.Client(trust_env=False) as http:
        assert http.get(photo_url).content == PHOTO.data
        assert http.get(missing_url).status_code == 404
        assert http.get(broken_url).status_code == 500
        assert http.get(gemini.url("/unknown")).status_code == 404
    assert gemini.static_hits("/photos/p1.png") == 1


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("17s", 17.0), ("1.5s", 1.5), ("0s", 0.0), ({"seconds": "3", "nanos": 500000000}, 3.5)],
)
def test_parse_duration(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", [None, "soon", "-1s", 17, {"seconds": "x"}])
def test_parse_duration_rejects_nonsense(value: object) -> None:
    assert parse_duration(value) is None
