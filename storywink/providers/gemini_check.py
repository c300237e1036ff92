"""The worker's start-up check of its Gemini models: `models.get`, no generation, no cost.

A model the API does not know, one Google has shut down, a size the image model does not
draw, or a key the API refuses stops the worker with one line (`ModelCheckFailed`, exit 2)
naming the setting, and for a model what the key can use instead; the key is never shown.
A model near its announced shutdown, one missing from `gemini_models`, or an API that
cannot be reached right now only warns: the worker starts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Final

from google import genai
from google.genai import errors

from storywink.config import ConfigurationError, IllustratorKind, Settings, StoryWriterKind
from storywink.providers.gemini import CONNECTION_ERRORS, TIMEOUT_ERRORS, http_error, key_refused
from storywink.providers.gemini_models import ModelKind, current_models, spec_for
from storywink.redact import redact, shorten

CHECK_TIMEOUT_SECONDS: Final = 10.0
SHUTDOWN_WARNING_DAYS: Final = 30
_ALTERNATIVES_SHOWN: Final = 6


class ModelCheckFailed(ConfigurationError):
    """A configured model or the key cannot work: the worker must not start."""


@dataclass(frozen=True)
class ConfiguredModel:
    setting: str  # e.g. GEMINI_IMAGE_MODEL
    name: str
    kind: ModelKind
    image_size: str | None = None  # GEMINI_IMAGE_SIZE, for an image model


@dataclass
class ModelCheck:
    """What the check found that does not stop the worker."""

    warnings: list[str] = field(default_factory=list)
    # (setting, model) -> its announced shutdown date, and the days until it.
    shutdowns: dict[tuple[str, str], date] = field(default_factory=dict)
    days_left: dict[tuple[str, str], int] = field(default_factory=dict)


def configured_models(settings: Settings) -> list[ConfiguredModel]:
    """The Gemini models this process would call."""
    models = []
    if settings.illustrator_kind is IllustratorKind.GEMINI:
        models.append(
            ConfiguredModel(
                "GEMINI_IMAGE_MODEL",
                settings.gemini_image_model,
                ModelKind.IMAGE,
                settings.gemini_image_size,
            )
        )
    if settings.story_writer_kind is StoryWriterKind.GEMINI:
        models.append(
            ConfiguredModel("GEMINI_TEXT_MODEL", settings.gemini_text_model, ModelKind.TEXT)
        )
    return models


async def check_models(
    client: genai.Client,
    models: Sequence[ConfiguredModel],
    today: date,
    secrets: Sequence[str] = (),
) -> ModelCheck:
    check = ModelCheck()
    for model in models:
        await _check_one(client, model, today, secrets, check)
    return check


async def _check_one(
    client: genai.Client,
    model: ConfiguredModel,
    today: date,
    secrets: Sequence[str],
    check: ModelCheck,
) -> None:
    spec = spec_for(model.name)
    where = f"{model.setting} {model.name}"
    if spec is not None and spec.retired_on(today):
        instead = spec.replacement or "a current model"
        raise ModelCheckFailed(
            f"{where}: Google shut it down on {spec.shutdown}; set {model.setting}={instead}"
            f"{await _alternatives(client, model.kind)}"
        )
    sizes = spec.image_sizes if spec is not None else ()
    if model.image_size and sizes and model.image_size not in sizes:
        raise ModelCheckFailed(
            f"GEMINI_IMAGE_SIZE {model.image_size}: {model.name} draws {', '.join(sizes)}"
        )
    try:
        await asyncio.wait_for(client.aio.models.get(model=model.name), CHECK_TIMEOUT_SECONDS)
    except errors.APIError as exc:
        if key_refused(exc):
            raise ModelCheckFailed(
                f"GEMINI_API_KEY: the Gemini API refused the key "
                f"({http_error(exc, secrets).reason}); set a valid key"
            ) from None
        if exc.code == 404:
            raise ModelCheckFailed(
                f"{where}: the Gemini API does not know this model (HTTP 404)"
                f"{await _alternatives(client, model.kind)}"
            ) from None
        check.warnings.append(f"{where}: not checked, {http_error(exc, secrets).reason}")
        return
    except (*TIMEOUT_ERRORS, *CONNECTION_ERRORS) as exc:
        reason = shorten(redact(f"{type(exc).__name__}: {exc}", secrets), 160)
        check.warnings.append(f"{where}: not checked, the Gemini API is unreachable ({reason})")
        return
    if spec is None:
        check.warnings.append(
            f"{where}: not in storywink's model table (storywink/providers/gemini_models.py): "
            "its price and sizes are unknown"
        )
        return
    days = spec.days_left(today)
    if days is not None and spec.shutdown is not None:
        check.shutdowns[(model.setting, model.name)] = spec.shutdown
        check.days_left[(model.setting, model.name)] = days
        if days <= SHUTDOWN_WARNING_DAYS:
            instead = f"; set {model.setting}={spec.replacement}" if spec.replacement else ""
            check.warnings.append(
                f"{where}: Google shuts it down on {spec.shutdown} (in {days} days){instead}"
            )


async def _alternatives(client: genai.Client, kind: ModelKind) -> str:
    """'; this key can use: a, b, c' from `models.list`, best effort."""
    try:
        listed = await asyncio.wait_for(_listed_names(client), CHECK_TIMEOUT_SECONDS)
    except (errors.APIError, *TIMEOUT_ERRORS, *CONNECTION_ERRORS):  # type: ignore[misc]
        return ""
    fitting = [name for name in listed if _is_kind(name, kind)]
    known = [name for name in current_models(kind, date.today()) if name in fitting]
    ordered = known + [name for name in fitting if name not in known]
    return f"; this key can use: {', '.join(ordered[:_ALTERNATIVES_SHOWN])}" if ordered else ""


async def _listed_names(client: genai.Client) -> list[str]:
    names = []
    async for model in await client.aio.models.list():
        actions = model.supported_actions or []
        if model.name and (not actions or "generateContent" in actions):
            names.append(model.name.removeprefix("models/"))
    return names


async def usable_models(client: genai.Client, secrets: Sequence[str] = ()) -> list[str]:
    """The models this key may call `generateContent` on (`models.list`); a refused key or
    an unreachable API raises `ModelCheckFailed` with one secret-free line."""
    try:
        return await asyncio.wait_for(_listed_names(client), CHECK_TIMEOUT_SECONDS)
    except errors.APIError as exc:
        if key_refused(exc):
            reason = http_error(exc, secrets).reason
            message = f"GEMINI_API_KEY: the Gemini API refused the key ({reason})"
            raise ModelCheckFailed(message) from None
        raise ModelCheckFailed(f"the Gemini API: {http_error(exc, secrets).reason}") from None
    except (*TIMEOUT_ERRORS, *CONNECTION_ERRORS) as exc:
        reason = shorten(redact(f"{type(exc).__name__}: {exc}", secrets), 160)
        raise ModelCheckFailed(f"the Gemini API is unreachable: {reason}") from None


def kind_of(name: str) -> ModelKind:
    """The table's kind of `name`, else a guess from its name."""
    return ModelKind.IMAGE if _is_kind(name, ModelKind.IMAGE) else ModelKind.TEXT


def _is_kind(name: str, kind: ModelKind) -> bool:
    spec = spec_for(name)
    if spec is not None:
        return spec.kind is kind
    is_image = "image" in name
    return is_image if kind is ModelKind.IMAGE else not is_image and name.startswith("gemini")
