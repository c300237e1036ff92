"""The one typed settings object, read from the environment (and `.env`).

Nothing reads the environment at import time: call `load_settings()` where a process
starts (worker, CLI) and hand the result down.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Literal, Self
from urllib.parse import parse_qs, urlsplit

from pydantic import (
    AliasChoices,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from temporalio.envconfig import ClientConfigProfile

from storywink.cost.prices import PriceOverride
from storywink.providers.gemini_models import (
    DEFAULT_IMAGE_MODEL,
    DEFAULT_IMAGE_SIZE,
    DEFAULT_TEXT_MODEL,
)

DEFAULT_DATA_DIR = Path(".data")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class IllustratorKind(StrEnum):
    GEMINI = "gemini"
    LOCAL = "local"


class StoryWriterKind(StrEnum):
    GEMINI = "gemini"
    OFFLINE = "offline"


class StorageKind(StrEnum):
    CLOUDINARY = "cloudinary"
    LOCAL = "local"


class ConfigurationError(Exception):
    """Settings are missing or invalid; the message names each bad setting."""


class CloudinaryCredentials:
    """Parsed `cloudinary://key:secret@cloud?upload_prefix=...`. The secret stays hidden."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme != "cloudinary" or not parts.hostname or not parts.username:
            raise ValueError("must look like cloudinary://API_KEY:API_SECRET@CLOUD_NAME")
        if not parts.password:
            raise ValueError("has no API secret (cloudinary://API_KEY:API_SECRET@CLOUD_NAME)")
        self.cloud_name: str = parts.hostname
        self.api_key: str = parts.username
        self.api_secret = SecretStr(parts.password)
        query = parse_qs(parts.query)
        self.upload_prefix: str | None = query.get("upload_prefix", [None])[0]

    def __repr__(self) -> str:
        return f"CloudinaryCredentials(cloud_name={self.cloud_name!r}, api_key='**********')"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    # Temporal. Address and namespace set here win over the profile; the profile
    # (temporal.toml and TEMPORAL_* variables, read as the `temporal` CLI reads them)
    # supplies them otherwise, and always supplies API key, TLS and gRPC headers.
    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "default"
    temporal_profile: str | None = Field(
        default=None, description="Profile of the Temporal config file ('default' if unset)."
    )
    temporal_config_file: Path | None = Field(
        default=None,
        description="temporal.toml to read (else ~/.config/temporalio/temporal.toml).",
    )
    temporal_task_queue: str = Field(default="storywink", min_length=1)
    temporal_illustration_task_queue: str = Field(default="storywink-illustration", min_length=1)
    temporal_story_task_queue: str = Field(default="storywink-story", min_length=1)
    temporal_ui_url: str | None = Field(
        default=None, description="Web UI base URL the demo prints (found by probing if unset)."
    )

    # Database
    database_url: SecretStr = SecretStr("")

    # Providers
    illustrator: IllustratorKind | None = None
    local_image_size: int = Field(
        default=768, ge=128, description="Side in pixels of the pages ILLUSTRATOR=local draws."
    )
    storage: StorageKind | None = None
    storage_dir: Path = DEFAULT_DATA_DIR / "storage"
    gemini_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("GEMINI_API_KEY", "GOOGLE_API_KEY")
    )
    gemini_base_url: str | None = None
    gemini_image_model: str = Field(default=DEFAULT_IMAGE_MODEL, min_length=1)
    gemini_image_size: str = DEFAULT_IMAGE_SIZE
    story_writer: StoryWriterKind | None = None
    gemini_text_model: str = Field(default=DEFAULT_TEXT_MODEL, min_length=1)
    cloudinary_url: SecretStr | None = None
    style_assets_url: str = "https://res.cloudinary.com/storywink/image/upload/v1/styles/"
    image_url_ttl_seconds: int = Field(
        default=3600,
        ge=10,
        le=7 * 24 * 3600,
        description="Lifetime of the signed URLs of photos and pictures shown to anyone.",
    )
    allow_private_fetch: bool = Field(
        default=False,
        description="Allow photo/reference URLs on loopback or private addresses (dev/tests).",
    )

    # Timeouts and retries of one page
    model_timeout_seconds: float = Field(default=120.0, gt=0)
    fetch_timeout_seconds: float = Field(default=30.0, gt=0)
    max_fetch_bytes: int = Field(default=20 * 1024 * 1024, gt=0)
    page_start_to_close_seconds: float = Field(default=300.0, gt=0)
    page_heartbeat_timeout_seconds: float = Field(default=4.0, gt=0)
    page_retry_attempts: int = Field(default=5, ge=1)
    page_retry_initial_seconds: float = Field(default=10.0, gt=0)
    page_timeout_retry_seconds: float = Field(
        default=0.5, gt=0, description="First retry after a timeout (a dead worker's page)."
    )
    page_retry_max_seconds: float = Field(default=300.0, gt=0)
    # A fault of the whole fleet (key, model or CDN credentials refused): pages wait.
    fleet_fault_retry_seconds: float = Field(
        default=60.0, gt=0, description="A page that met a fleet fault is tried again after this."
    )
    fleet_fault_probe_seconds: float = Field(
        default=30.0, gt=0, description="How often a paused worker probes the provider."
    )
    fleet_fault_max_hours: float = Field(
        default=12.0, gt=0, description="A page scheduled longer ago fails with the fault."
    )

    # Timeouts and retries of a book's story (the model call times out after
    # MODEL_TIMEOUT_SECONDS, below STORY_START_TO_CLOSE_SECONDS)
    story_start_to_close_seconds: float = Field(default=300.0, gt=0)
    story_heartbeat_timeout_seconds: float = Field(default=15.0, gt=0)
    story_retry_attempts: int = Field(default=4, ge=1)
    story_retry_initial_seconds: float = Field(default=5.0, gt=0)
    story_retry_max_seconds: float = Field(default=120.0, gt=0)

    # Worker
    story_concurrency: int = Field(default=2, ge=1)
    illustration_concurrency: int = Field(default=3, ge=1)
    finalize_concurrency: int = Field(default=2, ge=1)
    illustration_rate_limit: float | None = Field(
        default=None, gt=0, description="Images per minute across all workers."
    )
    story_rate_limit: float | None = Field(
        default=None, gt=0, description="Text-model requests per minute across all workers."
    )

    # Cost (storywink.cost, docs/costs.md)
    book_budget_usd: float | None = Field(
        default=None,
        gt=0,
        description="US dollars one book's model calls may cost (unset: twice its expected cost).",
    )
    user_daily_budget_usd: float | None = Field(
        default=None, gt=0, description="US dollars one parent's model calls may cost a UTC day."
    )
    model_prices: dict[str, list[PriceOverride]] = Field(
        default_factory=dict,
        description="JSON: per model, prices per million tokens from a date on (overrides).",
    )
    log_format: Literal["text", "json"] = "text"
    log_level: str = "INFO"
    shutdown_grace_seconds: float = Field(default=30.0, ge=0)
    upgrade_check_seconds: float = Field(
        default=60.0, gt=0, description="How often a worker moves runs it cannot replay."
    )
    worker_identity: str | None = None
    worker_deployment_name: str | None = Field(
        default=None,
        min_length=1,
        description="Join this Worker Deployment (worker versioning); unset: versioning off.",
    )
    worker_build_id: str | None = Field(
        default=None, min_length=1, description="This worker's version within the deployment."
    )

    # Operations endpoints of the worker (off unless a port is set)
    metrics_port: int | None = Field(
        default=None, ge=1, le=65535, description="Prometheus /metrics (SDK's and ours)."
    )
    health_port: int | None = Field(
        default=None, ge=1, le=65535, description="HTTP /healthz and /readyz."
    )
    ops_host: str = Field(default="0.0.0.0", min_length=1, description="Interface of both.")

    # --- Web backend (storywink.web, `storywink serve`) -----------------------------------
    # Tokens: HS256 with WEB_JWT_SECRET (else the local secret file, written on first use),
    # or RS256/ES256 with WEB_JWT_PUBLIC_KEY (PEM) or WEB_JWT_JWKS_URL; never both kinds.
    web_jwt_secret: SecretStr | None = Field(default=None, description="HS256 signing secret.")
    web_jwt_secret_file: Path = Field(
        default=DEFAULT_DATA_DIR / "web-jwt-secret",
        description="The local HS256 secret, generated on first use when no key is set.",
    )
    web_jwt_public_key: str | None = Field(
        default=None, description="PEM public key verifying RS256/ES256 tokens."
    )
    web_jwt_jwks_url: str | None = Field(default=None, description="JWKS URL (RS256/ES256).")
    web_jwt_audience: str | None = Field(default=None, description="Required `aud`, if set.")
    web_jwt_issuer: str | None = Field(default=None, description="Required `iss`, if set.")
    web_token_ttl_seconds: int = Field(
        default=12 * 3600, gt=0, description="Lifetime of `storywink token`'s tokens."
    )
    web_host: str = Field(default="127.0.0.1", min_length=1)
    web_port: int = Field(default=8000, ge=1, le=65535)
    web_max_photos: int = Field(default=30, ge=1, description="Photos per uploaded book.")
    web_max_upload_bytes: int = Field(
        default=100 * 1024 * 1024, gt=0, description="Whole multipart upload of one book."
    )
    web_progress_interval_seconds: float = Field(
        default=1.0, gt=0, description="How often a book's one watcher reads its progress."
    )

    @model_validator(mode="after")
    def _one_kind_of_web_key(self) -> Self:
        if self.web_jwt_secret is not None and (self.web_jwt_public_key or self.web_jwt_jwks_url):
            raise ValueError(
                "WEB_JWT_SECRET (HS256) and WEB_JWT_PUBLIC_KEY / WEB_JWT_JWKS_URL (RS256/ES256) "
                "exclude each other: set one kind of key"
            )
        return self

    # --- end of the web backend's settings -------------------------------------------------

    # Where temporal_address and temporal_namespace came from, for messages.
    _temporal_origin: dict[str, str] = PrivateAttr(
        default_factory=lambda: {"address": "TEMPORAL_ADDRESS", "namespace": "TEMPORAL_NAMESPACE"}
    )

    @field_validator("model_prices", mode="before")
    @classmethod
    def _one_or_more_prices(cls, value: object) -> object:
        # {"model": {...}} means {"model": [{...}]}
        if isinstance(value, dict):
            return {k: [v] if isinstance(v, dict) else v for k, v in value.items()}
        return value

    @field_validator("log_level")
    @classmethod
    def _known_log_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}, not {value!r}")
        return level

    @field_validator("database_url")
    @classmethod
    def _parsable_database_url(cls, value: SecretStr) -> SecretStr:
        # Only the form here; driver and server are checked when the database is opened.
        if url := value.get_secret_value():
            try:
                make_url(url)
            except (ArgumentError, ValueError):
                raise ValueError(
                    "is malformed (expected e.g. postgresql+psycopg://user:pw@host/db "
                    "or sqlite:///path/to/file.db)"
                ) from None
        return value

    @model_validator(mode="after")
    def _check_consistency(self) -> Self:
        if self.model_timeout_seconds >= self.page_start_to_close_seconds:
            raise ValueError(
                "MODEL_TIMEOUT_SECONDS must be below PAGE_START_TO_CLOSE_SECONDS "
                f"({self.model_timeout_seconds} >= {self.page_start_to_close_seconds})"
            )
        if self.model_timeout_seconds >= self.story_start_to_close_seconds:
            raise ValueError(
                "MODEL_TIMEOUT_SECONDS must be below STORY_START_TO_CLOSE_SECONDS "
                f"({self.model_timeout_seconds} >= {self.story_start_to_close_seconds})"
            )
        if self.story_writer_kind is StoryWriterKind.GEMINI and self.gemini_api_key is None:
            raise ValueError("STORY_WRITER=gemini needs GEMINI_API_KEY (or GOOGLE_API_KEY)")
        if self.metrics_port is not None and self.metrics_port == self.health_port:
            raise ValueError(f"METRICS_PORT and HEALTH_PORT must differ ({self.metrics_port})")
        if self.worker_deployment_name is not None and self.worker_build_id is None:
            raise ValueError(
                "WORKER_DEPLOYMENT_NAME needs WORKER_BUILD_ID (this worker's version, "
                "e.g. the git commit)"
            )
        if self.worker_build_id is not None and self.worker_deployment_name is None:
            raise ValueError("WORKER_BUILD_ID needs WORKER_DEPLOYMENT_NAME")
        if self.illustrator_kind is IllustratorKind.GEMINI and self.gemini_api_key is None:
            raise ValueError("ILLUSTRATOR=gemini needs GEMINI_API_KEY (or GOOGLE_API_KEY)")
        if self.storage_kind is StorageKind.CLOUDINARY:
            if self.cloudinary_url is None:
                raise ValueError("STORAGE=cloudinary needs CLOUDINARY_URL")
            try:
                CloudinaryCredentials(self.cloudinary_url.get_secret_value())
            except ValueError as exc:
                raise ValueError(f"CLOUDINARY_URL {exc}") from None
        return self

    @model_validator(mode="after")
    def _temporal_from_profile(self) -> Self:
        profile = self.temporal_client_profile()
        for name, value in (("address", profile.address), ("namespace", profile.namespace)):
            if f"temporal_{name}" not in self.model_fields_set and value:
                setattr(self, f"temporal_{name}", value)
                self._temporal_origin[name] = f"{name} of {self.temporal_profile_description}"
        return self

    def temporal_client_profile(self) -> ClientConfigProfile:
        """The Temporal profile: TEMPORAL_CONFIG_FILE (or the CLI's default file) at
        TEMPORAL_PROFILE, overridden by the process's TEMPORAL_* variables. It holds the API
        key: never log or print it (its repr shows the key)."""
        if self.temporal_config_file is not None and not self.temporal_config_file.is_file():
            raise ValueError(f"TEMPORAL_CONFIG_FILE {self.temporal_config_file} does not exist")
        try:
            return ClientConfigProfile.load(
                self.temporal_profile, config_source=self.temporal_config_file
            )
        except Exception as exc:
            # Only the first line: the parser quotes the offending line, which may be a key.
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(
                f"cannot read {self.temporal_profile_description} "
                f"(TEMPORAL_CONFIG_FILE, TEMPORAL_PROFILE): {first}"
            ) from None

    @property
    def temporal_profile_description(self) -> str:
        where = self.temporal_config_file or "the default temporal.toml"
        return f"Temporal profile {self.temporal_profile or 'default'!r} in {where}"

    def temporal_origin(self, name: Literal["address", "namespace"]) -> str:
        """Which setting the effective Temporal address or namespace came from."""
        return self._temporal_origin[name]

    @property
    def illustrator_kind(self) -> IllustratorKind:
        if self.illustrator is not None:
            return self.illustrator
        return IllustratorKind.GEMINI if self.gemini_api_key else IllustratorKind.LOCAL

    @property
    def story_writer_kind(self) -> StoryWriterKind:
        if self.story_writer is not None:
            return self.story_writer
        return StoryWriterKind.GEMINI if self.gemini_api_key else StoryWriterKind.OFFLINE

    @property
    def storage_kind(self) -> StorageKind:
        if self.storage is not None:
            return self.storage
        return StorageKind.CLOUDINARY if self.cloudinary_url else StorageKind.LOCAL

    @property
    def cloudinary(self) -> CloudinaryCredentials:
        if self.cloudinary_url is None:
            raise ConfigurationError("CLOUDINARY_URL is not set")
        return CloudinaryCredentials(self.cloudinary_url.get_secret_value())

    @property
    def resolved_database_url(self) -> str:
        if url := self.database_url.get_secret_value():
            return url
        return f"sqlite:///{(DEFAULT_DATA_DIR / 'storywink.db').resolve()}"

    def secrets(self) -> list[str]:
        """API key, CDN URL and secret, database password: what must never be shown."""
        found: list[str | None] = []
        if self.gemini_api_key:
            found.append(self.gemini_api_key.get_secret_value())
        if self.cloudinary_url:
            found.append(self.cloudinary_url.get_secret_value())
            found.append(self.cloudinary.api_secret.get_secret_value())
        found.append(make_url(self.resolved_database_url).password)  # parsed by the validator
        if self.web_jwt_secret:
            found.append(self.web_jwt_secret.get_secret_value())
        return [secret for secret in found if secret]

    @property
    def page_start_to_close(self) -> timedelta:
        return timedelta(seconds=self.page_start_to_close_seconds)

    @property
    def page_heartbeat_timeout(self) -> timedelta:
        return timedelta(seconds=self.page_heartbeat_timeout_seconds)


def load_settings(**overrides: object) -> Settings:
    """Read settings; on error raise `ConfigurationError` naming every bad setting."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_input=False, include_url=False):
            message = error["msg"].removeprefix("Value error, ")
            name = "_".join(str(part) for part in error["loc"]).upper()
            problems.append(f"{name}: {message}" if name else message)
        raise ConfigurationError("invalid settings: " + "; ".join(problems)) from None
