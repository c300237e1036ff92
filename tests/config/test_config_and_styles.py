"""Settings, the style library and the secret redactor."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from storywink.config import (
    CloudinaryCredentials,
    ConfigurationError,
    IllustratorKind,
    Settings,
    StorageKind,
    load_settings,
)
from storywink.illustration.styles import (
    DEFAULT_STYLE,
    STYLES,
    StyleLibraryError,
    UnknownStyle,
    library_hash,
    resolve_style,
    validate_library,
)
from storywink.redact import RedactingFilter, Redactor

GEMINI_KEY = "AIzaSy-test-gemini-key-0123456789"
CLOUD_SECRET = "cloud-secret-Zx9q7Wv"
CLOUDINARY_URL = f"cloudinary://123456789012345:{CLOUD_SECRET}@storywink-test"
DB_PASSWORD = "db-pass-Hq3k9"
ASSETS = "https://cdn.example/styles/"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """A clean environment: no `.env`, no provider keys and no setting from the shell."""
    monkeypatch.chdir(tmp_path)
    names = {field.upper() for field in Settings.model_fields} | {
        "GEMINI_API_KEY",
        "GOOGLE_API_KEY",
    }
    for name in list(os.environ):
        if name.upper() in names:
            monkeypatch.delenv(name)
    return monkeypatch


# -- settings -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"PAGE_RETRY_ATTEMPTS": "0"}, "PAGE_RETRY_ATTEMPTS"),
        ({"ILLUSTRATION_CONCURRENCY": "many"}, "ILLUSTRATION_CONCURRENCY"),
        (
            {"MODEL_TIMEOUT_SECONDS": "300", "PAGE_START_TO_CLOSE_SECONDS": "300"},
            "MODEL_TIMEOUT_SECONDS",
        ),
        ({"ILLUSTRATOR": "gemini"}, "GEMINI_API_KEY"),
        ({"STORAGE": "cloudinary"}, "CLOUDINARY_URL"),
        ({"CLOUDINARY_URL": f"https://123:{CLOUD_SECRET}@storywink-test"}, "CLOUDINARY_URL"),
        ({"CLOUDINARY_URL": f"cloudinary://{CLOUD_SECRET}@storywink-test"}, "CLOUDINARY_URL"),
        ({"CLOUDINARY_URL": f"cloudinary://123:{CLOUD_SECRET}@"}, "CLOUDINARY_URL"),
    ],
    ids=[
        "retry-attempts-zero",
        "concurrency-not-a-number",
        "model-timeout-not-below-page-timeout",
        "gemini-without-key",
        "cloudinary-without-url",
        "cloudinary-url-wrong-scheme",
        "cloudinary-url-without-secret",
        "cloudinary-url-without-cloud",
    ],
)
def test_invalid_settings_name_the_setting_and_hide_secrets(
    env: pytest.MonkeyPatch, values: dict[str, str], named: str
) -> None:
    env.setenv("DATABASE_URL", f"postgresql://storywink:{DB_PASSWORD}@db/storywink")
    for name, value in values.items():
        env.setenv(name, value)

    with pytest.raises(ConfigurationError) as raised:
        load_settings()

    message = str(raised.value)
    assert named in message
    for secret in (CLOUD_SECRET, DB_PASSWORD, GEMINI_KEY):
        assert secret not in message


def test_invalid_settings_with_a_key_set_do_not_echo_the_key(env: pytest.MonkeyPatch) -> None:
    env.setenv("GEMINI_API_KEY", GEMINI_KEY)
    env.setenv("CLOUDINARY_URL", CLOUDINARY_URL)
    env.setenv("PAGE_RETRY_ATTEMPTS", "0")
    env.setenv("LOG_FORMAT", "xml")

    with pytest.raises(ConfigurationError) as raised:
        load_settings()

    message = str(raised.value)
    assert "PAGE_RETRY_ATTEMPTS" in message and "LOG_FORMAT" in message
    assert GEMINI_KEY not in message and CLOUD_SECRET not in message


def test_every_bad_setting_is_reported_at_once(env: pytest.MonkeyPatch) -> None:
    env.setenv("PAGE_RETRY_ATTEMPTS", "0")
    env.setenv("FETCH_TIMEOUT_SECONDS", "-1")

    with pytest.raises(ConfigurationError) as raised:
        load_settings()

    assert "PAGE_RETRY_ATTEMPTS" in str(raised.value)
    assert "FETCH_TIMEOUT_SECONDS" in str(raised.value)


def test_google_api_key_is_accepted_as_the_gemini_key(env: pytest.MonkeyPatch) -> None:
    env.setenv("GOOGLE_API_KEY", GEMINI_KEY)

    settings = load_settings()

    assert settings.gemini_api_key is not None
    assert settings.gemini_api_key.get_secret_value() == GEMINI_KEY
    assert settings.illustrator_kind is IllustratorKind.GEMINI


def test_without_keys_the_defaults_are_local(env: pytest.MonkeyPatch) -> None:
    settings = load_settings()

    assert settings.illustrator_kind is IllustratorKind.LOCAL
    assert settings.storage_kind is StorageKind.LOCAL
    assert settings.resolved_database_url.startswith("sqlite:///")


def test_with_keys_the_defaults_are_gemini_and_cloudinary(env: pytest.MonkeyPatch) -> None:
    env.setenv("GEMINI_API_KEY", GEMINI_KEY)
    env.setenv("CLOUDINARY_URL", CLOUDINARY_URL + "?upload_prefix=https://api.example")

    settings = load_settings()

    assert settings.illustrator_kind is IllustratorKind.GEMINI
    assert settings.storage_kind is StorageKind.CLOUDINARY
    credentials = settings.cloudinary
    assert (credentials.cloud_name, credentials.api_key) == ("storywink-test", "123456789012345")
    assert credentials.api_secret.get_secret_value() == CLOUD_SECRET
    assert credentials.upload_prefix == "https://api.example"


def test_explicit_local_providers_win_over_keys(env: pytest.MonkeyPatch) -> None:
    env.setenv("GEMINI_API_KEY", GEMINI_KEY)
    env.setenv("CLOUDINARY_URL", CLOUDINARY_URL)
    env.setenv("ILLUSTRATOR", "local")
    env.setenv("STORAGE", "local")

    settings = load_settings()

    assert settings.illustrator_kind is IllustratorKind.LOCAL
    assert settings.storage_kind is StorageKind.LOCAL


def test_a_dotenv_file_in_the_working_directory_is_read(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text(f"GEMINI_API_KEY={GEMINI_KEY}\nPAGE_RETRY_ATTEMPTS=7\n")

    settings = load_settings()

    assert settings.page_retry_attempts == 7
    assert settings.illustrator_kind is IllustratorKind.GEMINI


def test_settings_repr_and_str_hide_provider_secrets(env: pytest.MonkeyPatch) -> None:
    env.setenv("GEMINI_API_KEY", GEMINI_KEY)
    env.setenv("CLOUDINARY_URL", CLOUDINARY_URL)

    settings = load_settings()

    for shown in (repr(settings), str(settings), f"{settings}"):
        assert GEMINI_KEY not in shown
        assert CLOUD_SECRET not in shown


def test_settings_repr_hides_the_database_password(env: pytest.MonkeyPatch) -> None:
    env.setenv("DATABASE_URL", f"postgresql+psycopg://storywink:{DB_PASSWORD}@db:5432/storywink")

    settings = load_settings()

    assert DB_PASSWORD not in repr(settings)
    assert DB_PASSWORD not in str(settings)


def test_cloudinary_credentials_never_show_the_secret() -> None:
    credentials = CloudinaryCredentials(CLOUDINARY_URL)

    for shown in (repr(credentials), str(credentials), f"{credentials!r}"):
        assert CLOUD_SECRET not in shown
        assert "storywink-test" in shown
    assert CLOUD_SECRET not in str(credentials.api_secret)


# -- style library ----------------------------------------------------------------------------


def test_style_library_validates_with_at_least_two_styles() -> None:
    digest = validate_library(ASSETS)

    assert len(STYLES) >= 2
    assert DEFAULT_STYLE in STYLES
    assert digest == library_hash()
    assert len(digest) == 16 and int(digest, 16) >= 0


@pytest.mark.process
def test_style_library_hash_is_the_same_in_every_process() -> None:
    code = "from storywink.illustration.styles import library_hash; print(library_hash())"
    hashes = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert hashes == {library_hash()}


def test_each_style_has_its_own_content_hash() -> None:
    hashes = {resolve_style(key, ASSETS).content_hash for key in STYLES}
    assert len(hashes) == len(STYLES)


@pytest.mark.parametrize("assets_url", [ASSETS, "https://cdn.example/styles"])
def test_resolved_style_has_absolute_reference_urls_under_the_assets_url(
    assets_url: str,
) -> None:
    for key in STYLES:
        snapshot = resolve_style(key, assets_url)
        urls = [*snapshot.reference_image_urls]
        if snapshot.title_reference_image_url:
            urls.append(snapshot.title_reference_image_url)
        assert snapshot.key == key
        assert urls
        for url in urls:
            assert url.startswith("https://cdn.example/styles/"), url
            assert url.removeprefix("https://cdn.example/styles/").startswith(f"{key}/"), url


def test_resolving_a_style_twice_gives_the_same_snapshot() -> None:
    assert resolve_style("storybook", ASSETS) == resolve_style("storybook", ASSETS)
    assert resolve_style("storybook", ASSETS).model_dump() == (
        resolve_style("storybook", ASSETS).model_dump()
    )


def test_title_page_uses_the_title_reference_when_the_style_has_one() -> None:
    vignette = resolve_style("vignette", ASSETS)
    assert vignette.title_reference_image_url is not None
    assert vignette.reference_for(is_title_page=True) == vignette.title_reference_image_url
    assert vignette.reference_for(is_title_page=False) == vignette.reference_image_urls[0]


def test_unknown_style_names_the_known_styles() -> None:
    with pytest.raises(UnknownStyle) as raised:
        resolve_style("cubism", ASSETS)

    message = str(raised.value)
    assert "cubism" in message
    assert all(key in message for key in STYLES)
    assert raised.value.key == "cubism"


@pytest.mark.parametrize(
    "assets_url",
    ["", "cdn.example/styles/", "ftp://cdn.example/styles/", "https://", "not a url at all"],
)
def test_malformed_style_assets_url_is_rejected(assets_url: str) -> None:
    with pytest.raises(StyleLibraryError, match="STYLE_ASSETS_URL"):
        validate_library(assets_url)


@pytest.mark.parametrize(
    "assets_url", ["https:/res.cloudinary.com/storywink/styles/", "https:///styles/"]
)
def test_http_style_assets_url_without_a_host_is_rejected(assets_url: str) -> None:
    with pytest.raises(StyleLibraryError, match="STYLE_ASSETS_URL"):
        validate_library(assets_url)


# -- redaction ----------------------------------------------------------------------------


def test_redactor_removes_the_given_secrets() -> None:
    redact = Redactor([GEMINI_KEY, CLOUD_SECRET, None, ""])

    text = redact(f"calling with {GEMINI_KEY} and {CLOUD_SECRET} failed")

    assert GEMINI_KEY not in text and CLOUD_SECRET not in text
    assert text.startswith("calling with ") and text.endswith(" failed")
    assert "[redacted]" in text


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        ("GET https://api.example/v1/models?key=AIzaLeaked123&alt=json", "AIzaLeaked123"),
        ("https://res.example/img.png?x=1&signature=abcdef0123456789", "abcdef0123456789"),
        ("postgresql://storywink:hunter2pw@db:5432/storywink", "hunter2pw"),
        ("upload to cloudinary://1234:sekretvalue@mycloud refused", "sekretvalue"),
    ],
    ids=["key-param", "signature-param", "db-url-password", "cloudinary-url-secret"],
)
def test_redactor_removes_credentials_it_was_not_told_about(text: str, hidden: str) -> None:
    redacted = Redactor()(text)

    assert hidden not in redacted
    assert "[redacted]" in redacted


def test_redactor_keeps_the_rest_of_a_url() -> None:
    redacted = Redactor()("https://api.example/v1/models?key=AIzaLeaked123&alt=json")
    assert redacted.startswith("https://api.example/v1/models?key=")
    assert redacted.endswith("&alt=json")


def test_redactor_keeps_the_bracket_around_a_key() -> None:
    redacted = Redactor()("model call failed (key=AIzaLeaked123)")
    assert redacted == "model call failed (key=[redacted])"


def test_redacting_filter_cleans_message_arguments_and_exception_text() -> None:
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    handler = Collect()
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(RedactingFilter(Redactor([GEMINI_KEY])))
    logger = logging.getLogger(f"storywink.test.{id(records)}")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        try:
            raise RuntimeError(f"upstream said: bad key {GEMINI_KEY}")
        except RuntimeError:
            logger.exception(
                "page %d failed calling %s", 3, "https://api.example/x?key=AIzaOther999"
            )
    finally:
        logger.removeHandler(handler)

    assert len(records) == 1
    output = records[0]
    assert output.startswith("ERROR page 3 failed calling https://api.example/x?key=")
    assert "RuntimeError: upstream said: bad key [redacted]" in output
    assert GEMINI_KEY not in output
    assert "AIzaOther999" not in output
