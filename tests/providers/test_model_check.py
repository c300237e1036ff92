"""The worker's start-up check of its Gemini models, through the real google-genai SDK
against the fake Gemini API (`models.get`, `models.list`): a retired or unknown model and
a refused key stop the start in one line (exit 2), never showing the key; a model near its
shutdown, one not in the table, or an unreachable API only warn."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from google import genai

from storywink.providers.gemini import build_gemini_client
from storywink.providers.gemini_check import (
    ConfiguredModel,
    ModelCheck,
    ModelCheckFailed,
    check_models,
)
from storywink.providers.gemini_models import CATALOG, ModelKind
from tests.support import forked_cli
from tests.support.commands import cli_env, run_worker
from tests.support.fakes.gemini_server import FakeGeminiServer

KEY = "AIzaFAKE-model-check-key-LEAK-CANARY-42"
TODAY = date(2026, 12, 4)
IMAGE = ConfiguredModel("GEMINI_IMAGE_MODEL", "gemini-3.1-flash-image", ModelKind.IMAGE, "1K")
TEXT = ConfiguredModel("GEMINI_TEXT_MODEL", "gemini-3.5-flash-lite", ModelKind.TEXT)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def gemini() -> Iterator[FakeGeminiServer]:
    with FakeGeminiServer(api_key=KEY) as server:
        yield server


@pytest.fixture
async def client(gemini: FakeGeminiServer) -> AsyncIterator[genai.Client]:
    built = build_gemini_client(KEY, gemini.base_url, 5.0)
    yield built
    await built.aio.aclose()


async def _refusal(client: genai.Client, *models: ConfiguredModel) -> str:
    with pytest.raises(ModelCheckFailed) as caught:
        await check_models(client, models, TODAY, [KEY])
    message = str(caught.value)
    assert "\n" not in message and KEY not in message and "LEAK-CANARY" not in message
    return message


async def test_todays_defaults_pass_without_a_warning(
    client: genai.Client, gemini: FakeGeminiServer
) -> None:
    check = await check_models(client, [IMAGE, TEXT], TODAY, [KEY])

    assert check == ModelCheck()
    assert gemini.model_lookups == 2 and gemini.call_count == 0  # no generation


async def test_a_retired_model_names_the_setting_and_what_to_use(client: genai.Client) -> None:
    retired = ConfiguredModel("GEMINI_IMAGE_MODEL", "gemini-2.5-flash-image", ModelKind.IMAGE)

    message = await _refusal(client, retired)

    assert message.startswith("GEMINI_IMAGE_MODEL gemini-2.5-flash-image: Google shut it down")
    assert "set GEMINI_IMAGE_MODEL=gemini-3.1-flash-image" in message
    assert "this key can use: gemini-3.1-flash-image, gemini-3-pro-image" in message
    assert "flash-lite" not in message  # text models are not offered for the image setting


async def test_a_model_the_api_does_not_know_is_refused(client: genai.Client) -> None:
    unknown = ConfiguredModel("GEMINI_TEXT_MODEL", "gemini-9-flash", ModelKind.TEXT)

    message = await _refusal(client, unknown)

    assert message.startswith("GEMINI_TEXT_MODEL gemini-9-flash: the Gemini API does not know")
    assert "this key can use: gemini-3.8-flash, gemini-3.5-flash-lite" in message
    assert "image" not in message.split("can use:")[1]


async def test_a_refused_key_is_named_and_never_shown(gemini: FakeGeminiServer) -> None:
    wrong = build_gemini_client("AIzaWRONG-LEAK-CANARY-key", gemini.base_url, 5.0)

    message = await _refusal(wrong, IMAGE)
    await wrong.aio.aclose()

    assert message.startswith("GEMINI_API_KEY: the Gemini API refused the key (HTTP 400")
    assert "WRONG" not in message


async def test_an_image_size_the_model_does_not_draw_is_refused(client: genai.Client) -> None:
    huge = ConfiguredModel("GEMINI_IMAGE_MODEL", "gemini-3.1-flash-image", ModelKind.IMAGE, "8K")

    assert "GEMINI_IMAGE_SIZE 8K: gemini-3.1-flash-image draws 512, 1K, 2K, 4K" in (
        await _refusal(client, huge)
    )


async def test_a_model_near_its_shutdown_warns_and_is_measured(client: genai.Client) -> None:
    soon = ConfiguredModel("GEMINI_TEXT_MODEL", "gemini-3.1-flash-lite", ModelKind.TEXT)
    shutdown = CATALOG["gemini-3.1-flash-lite"].shutdown
    assert shutdown is not None

    early = await check_models(client, [soon], shutdown - timedelta(days=31), [KEY])
    near = await check_models(client, [soon], shutdown - timedelta(days=12), [KEY])

    assert early.warnings == [] and early.days_left == {("GEMINI_TEXT_MODEL", soon.name): 31}
    assert near.days_left == {("GEMINI_TEXT_MODEL", soon.name): 12}
    assert near.shutdowns == {("GEMINI_TEXT_MODEL", soon.name): shutdown}
    assert near.warnings == [
        f"GEMINI_TEXT_MODEL gemini-3.1-flash-lite: Google shuts it down on {shutdown} (in 12 days)"
    ]


async def test_a_model_missing_from_the_table_works_with_a_warning(
    client: genai.Client, gemini: FakeGeminiServer
) -> None:
    gemini.add_model("gemini-4-flash-image")
    newer = ConfiguredModel("GEMINI_IMAGE_MODEL", "gemini-4-flash-image", ModelKind.IMAGE, "1K")

    check = await check_models(client, [newer], TODAY, [KEY])

    assert len(check.warnings) == 1 and "price and sizes are unknown" in check.warnings[0]


async def test_an_unreachable_api_only_warns() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    offline = build_gemini_client(KEY, f"http://127.0.0.1:{port}", 5.0)

    check = await check_models(offline, [IMAGE], TODAY, [KEY])
    await offline.aio.aclose()

    assert len(check.warnings) == 1
    assert "not checked, the Gemini API is unreachable" in check.warnings[0]


# ----- the worker process: exit 2, one line, no secret -----


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"GEMINI_IMAGE_MODEL": "gemini-2.5-flash-image"}, "GEMINI_IMAGE_MODEL"),
        ({"GEMINI_TEXT_MODEL": "gemini-2.0-flash"}, "GEMINI_TEXT_MODEL gemini-2.0-flash"),
        ({"GEMINI_API_KEY": "AIzaREVOKED-LEAK-CANARY"}, "GEMINI_API_KEY: the Gemini API refused"),
    ],
    ids=["retired", "unknown", "refused key"],
)
def test_the_worker_refuses_to_start_in_one_line(
    tmp_path: Path, gemini: FakeGeminiServer, env: dict[str, str], named: str
) -> None:
    values = {
        "GEMINI_API_KEY": KEY,
        "GEMINI_BASE_URL": gemini.base_url,
        "ILLUSTRATOR": "gemini",
        "STYLE_ASSETS_URL": gemini.url("/styles/"),
        "ALLOW_PRIVATE_FETCH": "true",
        "LOG_LEVEL": "WARNING",
    }
    result = run_worker(tmp_path, **(values | env))

    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and named in lines[0], result.stderr
    assert "LEAK-CANARY" not in result.stderr and "Traceback" not in result.stderr
    assert gemini.call_count == 0  # nothing was generated


# ----- storywink models -----


def _models_command(tmp_path: Path, gemini: FakeGeminiServer, **env: str) -> tuple[int, str, str]:
    values = cli_env(tmp_path) | {"GEMINI_API_KEY": KEY, "GEMINI_BASE_URL": gemini.base_url}
    result = forked_cli.run(["models"], cwd=tmp_path, env=values | env)
    return result.returncode, result.stdout, result.stderr


def test_models_lists_what_the_key_can_use_and_marks_the_configured_ones(
    tmp_path: Path, gemini: FakeGeminiServer
) -> None:
    code, out, _ = _models_command(tmp_path, gemini, GEMINI_TEXT_MODEL="gemini-3.1-flash-lite")

    lines = {line.split()[0]: line for line in out.splitlines()}
    assert code == 0
    assert lines["gemini-3.1-flash-image"].endswith("<- GEMINI_IMAGE_MODEL")
    assert "shuts down 2027-05-07" in lines["gemini-3.1-flash-lite"]
    assert lines["gemini-3.1-flash-lite"].endswith("<- GEMINI_TEXT_MODEL")
    assert "<-" not in lines["gemini-3.8-flash"]


def test_models_says_which_configured_model_the_key_cannot_use(
    tmp_path: Path, gemini: FakeGeminiServer
) -> None:
    code, _, err = _models_command(tmp_path, gemini, GEMINI_IMAGE_MODEL="gemini-2.5-flash-image")

    assert code == 2
    assert err.strip() == (
        "error: not available to this key: GEMINI_IMAGE_MODEL gemini-2.5-flash-image"
    )


def test_models_with_a_refused_key_is_one_line_without_the_key(
    tmp_path: Path, gemini: FakeGeminiServer
) -> None:
    code, _, err = _models_command(tmp_path, gemini, GEMINI_API_KEY="AIzaBAD-LEAK-CANARY")

    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "GEMINI_API_KEY: the Gemini API refused the key" in err
    assert "LEAK-CANARY" not in err
