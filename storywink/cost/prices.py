"""Prices as data: the per-model table (storywink.providers.gemini_models) with overrides.

`MODEL_PRICES` (JSON) overrides a model's prices from a date on, without a release: a call
is priced by the prices in force on its day, and its cost is written in its ledger row
when it settles, so a later price change never rewrites the past.

A model whose price is unknown (`None` in the table, no override) gets its call recorded
with cost unknown; its budget reservation uses the best estimate: for each direction and
modality, the highest price the table knows for a model of the same kind (0 when none).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date
from typing import Final

from pydantic import BaseModel, ConfigDict

from storywink.providers.base import TokenUsage
from storywink.providers.gemini_models import CATALOG, ModelKind, Prices, spec_for

# Models that cost nothing: the offline providers.
FREE_MODELS: Final = frozenset({"local", "offline"})
FREE: Final = "free"
MICRO: Final = 1_000_000
# What a call is expected to use before it is made (docs/costs.md says why these).
IMAGE_PROMPT_TOKENS: Final = 1_300  # the prompt and two ~560-token images
IMAGE_THOUGHT_TOKENS: Final = 256
STORY_PROMPT_TOKENS_PER_PAGE: Final = 600  # a page's photo and its line of the prompt
STORY_OUTPUT_TOKENS_PER_PAGE: Final = 60
STORY_FIXED_TOKENS: Final = 800  # prompt text in, title and thinking out
UNKNOWN_IMAGE_TOKENS: Final = 1_290  # a size the table has no figure for


class PriceOverride(BaseModel):
    """One model's prices from `from_date` on (US dollars per million tokens)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_date: date = date.min
    input_text: float | None = None
    input_image: float | None = None
    output_text: float | None = None
    output_image: float | None = None


@dataclass(frozen=True)
class Usage:
    """Tokens by direction and modality, as billed (thinking is output text)."""

    input_text: int = 0
    input_image: int = 0
    output_text: int = 0
    output_image: int = 0
    thought_tokens: int = 0  # already in output_text; kept apart to be shown

    @property
    def prompt_tokens(self) -> int:
        return self.input_text + self.input_image

    @property
    def total_tokens(self) -> int:
        return self.input_text + self.input_image + self.output_text + self.output_image


def billed_usage(reported: TokenUsage, *, image_call: bool) -> Usage:
    """A call's usage as the answer reported it. Input is priced as text and image alike
    by today's models; an answer without per-modality output details (2025's format) is
    all image for an image model's call, all text for a text model's."""
    image_out = reported.output_by_modality.get("IMAGE")
    text_out = reported.output_by_modality.get("TEXT")
    if image_out is None and text_out is None:
        total = reported.output_tokens
        image_out, text_out = (total, 0) if image_call else (0, total)
    return Usage(
        input_text=reported.prompt_tokens,
        output_text=(text_out or 0) + reported.thought_tokens,
        output_image=image_out or 0,
        thought_tokens=reported.thought_tokens,
    )


@dataclass(frozen=True)
class CallPrice:
    """The prices a call is charged at: `known` False when the model's own are not known
    (`prices` then holds the estimate its reservation uses)."""

    prices: Prices
    known: bool

    @property
    def free(self) -> bool:
        return self.prices.source == FREE

    def micro_usd(self, usage: Usage) -> int:
        return _micro_usd(usage, self.prices)


class PriceBook:
    """The table's prices with `MODEL_PRICES` overrides, per model and day."""

    def __init__(self, overrides: Mapping[str, list[PriceOverride]] | None = None) -> None:
        self._overrides = {
            model.removeprefix("models/"): sorted(entries, key=lambda o: o.from_date)
            for model, entries in (overrides or {}).items()
        }

    def price(self, model: str, on: date) -> CallPrice:
        name = model.removeprefix("models/")
        if name in FREE_MODELS:
            return CallPrice(Prices(read_on=date.min, source=FREE, **_ZERO), known=True)
        prices = self._prices(name, on)
        if prices is not None and _complete(prices, self._kind(name)):
            return CallPrice(prices, known=True)
        estimate = _fill(prices, self._estimate(self._kind(name), on), on)
        return CallPrice(estimate, known=False)

    def _prices(self, name: str, on: date) -> Prices | None:
        spec = spec_for(name)
        prices = spec.prices if spec is not None else None
        for override in self._overrides.get(name, []):
            if override.from_date <= on:
                prices = Prices(
                    read_on=override.from_date,
                    source="MODEL_PRICES",
                    **override.model_dump(exclude={"from_date"}),
                )
        return prices

    def _kind(self, name: str) -> ModelKind:
        spec = spec_for(name)
        return spec.kind if spec is not None else ModelKind.IMAGE

    def _estimate(self, kind: ModelKind, on: date) -> dict[str, float]:
        """The highest known price of each field among the models of `kind`."""
        best = dict(_ZERO)
        for name, spec in CATALOG.items():
            prices = self._prices(name, on)
            if spec.kind is not kind or prices is None:
                continue
            for field, value in _fields(prices).items():
                if value is not None:
                    best[field] = max(best[field], value)
        return best


def expected_image_usage(model: str, image_size: str) -> Usage:
    spec = spec_for(model)
    tokens = spec.tokens_per_image.get(image_size) if spec is not None else None
    return Usage(
        input_text=IMAGE_PROMPT_TOKENS,
        output_text=IMAGE_THOUGHT_TOKENS,
        output_image=tokens or UNKNOWN_IMAGE_TOKENS,
    )


def expected_story_usage(pages: int) -> Usage:
    return Usage(
        input_text=STORY_FIXED_TOKENS + pages * STORY_PROMPT_TOKENS_PER_PAGE,
        output_text=STORY_FIXED_TOKENS + pages * STORY_OUTPUT_TOKENS_PER_PAGE,
    )


def usd(micro_usd: int | None) -> str:
    return "unknown" if micro_usd is None else f"${micro_usd / MICRO:.4f}"


_ZERO: Final[Mapping[str, float]] = {
    "input_text": 0.0,
    "input_image": 0.0,
    "output_text": 0.0,
    "output_image": 0.0,
}


def _fields(prices: Prices) -> dict[str, float | None]:
    return {
        "input_text": prices.input_text,
        "input_image": prices.input_image,
        "output_text": prices.output_text,
        "output_image": prices.output_image,
    }


def _complete(prices: Prices, kind: ModelKind) -> bool:
    """Whether every price a call of this kind is billed at is known (a text model's
    answer has no image output)."""
    needed = ["input_text", "output_text"] + (["output_image"] if kind is ModelKind.IMAGE else [])
    return all(_fields(prices)[field] is not None for field in needed)


def _fill(prices: Prices | None, estimate: Mapping[str, float], on: date) -> Prices:
    if prices is None:
        return Prices(read_on=on, source="estimate", **estimate)

    def pick(field: str) -> float:
        value = _fields(prices)[field]
        return value if value is not None else estimate[field]

    return replace(
        prices,
        input_text=pick("input_text"),
        input_image=pick("input_image"),
        output_text=pick("output_text"),
        output_image=pick("output_image"),
    )


def _micro_usd(usage: Usage, prices: Prices) -> int:
    dollars = (
        usage.input_text * (prices.input_text or 0.0)
        + usage.input_image * (prices.input_image or 0.0)
        + usage.output_text * (prices.output_text or 0.0)
        + usage.output_image * (prices.output_image or 0.0)
    )  # per million tokens: the sum is already in micro-dollars
    return round(dollars)
