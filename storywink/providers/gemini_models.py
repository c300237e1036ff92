"""What the code knows per Gemini model: the one table to edit when Google moves on.

Read from Google's own pages on 2026-12-04 (docs/gemini-models.md lists them): the
deprecations page (release and shutdown dates, replacements), the models page, and the
Gemini 3.1 Flash Image model page (sizes, aspect ratios, tokens per image). Prices are data
with the date they were read and where; a price not found on a Google page is `None`,
never guessed. A model missing from the table still works when the API accepts it; its
price is then unknown (the worker warns).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from types import MappingProxyType
from typing import Final

READ_ON: Final = date(2026, 12, 4)


class ModelKind(StrEnum):
    IMAGE = "image"
    TEXT = "text"


class Thinking(StrEnum):
    """Whether a model thinks, and which `ThinkingConfig` field steers it."""

    NONE = "none"
    BUDGET = "thinking_budget"  # Gemini 2.5: a token budget
    LEVEL = "thinking_level"  # Gemini 3: MINIMAL / LOW / MEDIUM / HIGH


@dataclass(frozen=True)
class Prices:
    """US dollars per million tokens, by direction and modality; `None`: not read."""

    read_on: date
    source: str
    input_text: float | None = None
    input_image: float | None = None
    output_text: float | None = None  # thinking tokens are billed as output text
    output_image: float | None = None


@dataclass(frozen=True)
class ModelSpec:
    name: str
    kind: ModelKind
    released: date
    thinking: Thinking
    shutdown: date | None = None  # announced (earliest) shutdown, when Google gave one
    replacement: str | None = None
    image_sizes: tuple[str, ...] = ()
    aspect_ratios: tuple[str, ...] = ()
    tokens_per_image: Mapping[str, int] = field(default_factory=dict)  # output, by size
    prices: Prices | None = None

    def retired_on(self, today: date) -> bool:
        return self.shutdown is not None and self.shutdown <= today

    def days_left(self, today: date) -> int | None:
        return (self.shutdown - today).days if self.shutdown is not None else None


_FLASH_IMAGE_RATIOS: Final = (
    "1:1",
    "1:4",
    "1:8",
    "2:3",
    "3:2",
    "3:4",
    "4:1",
    "4:3",
    "4:5",
    "5:4",
    "8:1",
    "9:16",
    "16:9",
    "21:9",
)
_DEPRECATIONS: Final = "ai.google.dev/gemini-api/docs/deprecations"

_MODELS: Final = (
    ModelSpec(
        name="gemini-3.1-flash-image",  # "Nano Banana 2", GA
        kind=ModelKind.IMAGE,
        released=date(2026, 5, 28),
        thinking=Thinking.LEVEL,
        image_sizes=("512", "1K", "2K", "4K"),
        aspect_ratios=_FLASH_IMAGE_RATIOS,
        tokens_per_image={"512": 747, "1K": 1120, "2K": 1680, "4K": 2520},
        prices=Prices(
            read_on=date(2026, 12, 4),
            source=(
                "Google's pricing page for the preview as quoted by lumenfall.ai "
                "(2026-02-26; no Google page found since): $0.067 per 1K image = 1120 tokens"
            ),
            input_text=0.25,
            input_image=0.25,
            output_text=1.50,
            output_image=60.0,
        ),
    ),
    ModelSpec(
        name="gemini-3-pro-image",  # "Nano Banana Pro", GA
        kind=ModelKind.IMAGE,
        released=date(2026, 5, 28),
        thinking=Thinking.LEVEL,
        image_sizes=("1K", "2K", "4K"),
        aspect_ratios=_FLASH_IMAGE_RATIOS,
    ),
    ModelSpec(
        name="gemini-2.5-flash-image",
        kind=ModelKind.IMAGE,
        released=date(2025, 10, 2),
        thinking=Thinking.NONE,
        shutdown=date(2026, 10, 2),
        replacement="gemini-3.1-flash-image",
        image_sizes=("1K",),
        aspect_ratios=("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9"),
        tokens_per_image={"1K": 1290},
    ),
    ModelSpec(
        name="gemini-3.5-flash-lite",  # GA; Google's replacement for gemini-2.5-flash
        kind=ModelKind.TEXT,
        released=date(2026, 7, 21),
        thinking=Thinking.LEVEL,
    ),
    ModelSpec(
        name="gemini-3.5-flash",
        kind=ModelKind.TEXT,
        released=date(2026, 5, 19),
        thinking=Thinking.LEVEL,
    ),
    ModelSpec(
        name="gemini-3.8-flash",
        kind=ModelKind.TEXT,
        released=date(2026, 9, 2),
        thinking=Thinking.LEVEL,
        prices=Prices(
            read_on=date(2026, 12, 4),
            source="Google's pricing page as transcribed by api-evangelist on 2026-09-20",
            input_text=0.75,  # "through December 31, 2026"
            input_image=0.75,
        ),
    ),
    ModelSpec(
        name="gemini-3.1-flash-lite",
        kind=ModelKind.TEXT,
        released=date(2026, 5, 7),
        thinking=Thinking.LEVEL,
        shutdown=date(2027, 5, 7),
    ),
    ModelSpec(
        name="gemini-2.5-flash",
        kind=ModelKind.TEXT,
        released=date(2025, 6, 17),
        thinking=Thinking.BUDGET,
        shutdown=date(2026, 6, 17),
        replacement="gemini-3.5-flash-lite",
    ),
)

CATALOG: Final[Mapping[str, ModelSpec]] = MappingProxyType({spec.name: spec for spec in _MODELS})
DEFAULT_IMAGE_MODEL: Final = "gemini-3.1-flash-image"
DEFAULT_TEXT_MODEL: Final = "gemini-3.5-flash-lite"
DEFAULT_IMAGE_SIZE: Final = "1K"
SOURCES: Final = (_DEPRECATIONS, "ai.google.dev/gemini-api/docs/models")


def spec_for(model: str) -> ModelSpec | None:
    """The table's entry for `model` (`models/` prefix or not), or None."""
    return CATALOG.get(model.removeprefix("models/"))


def current_models(kind: ModelKind, today: date) -> list[str]:
    """The table's models of `kind` not shut down by `today`, newest first."""
    alive = [s for s in _MODELS if s.kind is kind and not s.retired_on(today)]
    return [s.name for s in sorted(alive, key=lambda s: s.released, reverse=True)]
