"""Prices as data: the per-model table, MODEL_PRICES overrides from their date, and the
estimate a call of unknown price reserves (docs/costs.md)."""

from __future__ import annotations

from datetime import date

import pytest

from storywink.config import Settings
from storywink.cost.prices import (
    PriceBook,
    PriceOverride,
    Usage,
    billed_usage,
    expected_image_usage,
)
from storywink.providers.base import TokenUsage

TODAY = date(2026, 12, 4)


def test_an_image_call_is_expected_to_cost_one_1k_image_at_the_tables_prices() -> None:
    price = PriceBook().price("models/gemini-3.1-flash-image", TODAY)
    usage = expected_image_usage("gemini-3.1-flash-image", "1K")
    assert price.known and usage.output_image == 1120
    # 1,300 in at $0.25, 256 thinking at $1.50, 1,120 image at $60 per million
    assert price.micro_usd(usage) == round(1300 * 0.25 + 256 * 1.5 + 1120 * 60.0)


def test_an_override_applies_from_its_date_and_never_before() -> None:
    later = PriceOverride(
        from_date=date(2027, 1, 1), input_text=0.2, output_text=1.0, output_image=40.0
    )
    book = PriceBook({"gemini-3.1-flash-image": [later]})
    usage = Usage(output_image=1_000_000)
    assert book.price("gemini-3.1-flash-image", TODAY).micro_usd(usage) == 60_000_000
    assert book.price("gemini-3.1-flash-image", date(2027, 1, 1)).micro_usd(usage) == 40_000_000


def test_a_model_of_unknown_price_reserves_the_tables_highest_known_price() -> None:
    price = PriceBook().price("gemini-3.5-flash-lite", TODAY)  # no prices in the table
    assert not price.known
    assert price.prices.input_text == 0.75  # gemini-3.8-flash's, the highest known
    assert price.prices.output_text == 0.0  # no text model's output price is known
    unknown_image = PriceBook().price("gemini-2.5-flash-image", TODAY)
    assert not unknown_image.known and unknown_image.prices.output_image == 60.0
    overridden = PriceBook(
        {"gemini-3.5-flash-lite": [PriceOverride(input_text=0.1, output_text=0.4)]}
    ).price("gemini-3.5-flash-lite", TODAY)
    assert overridden.known and overridden.prices.output_text == 0.4


def test_usage_is_billed_by_modality_with_thinking_as_output_text() -> None:
    today = billed_usage(
        TokenUsage(
            prompt_tokens=1300,
            output_tokens=1120,
            thought_tokens=240,
            output_by_modality={"IMAGE": 1120},
        ),
        image_call=True,
    )
    assert (today.input_text, today.output_text, today.output_image) == (1300, 240, 1120)
    old_format = TokenUsage(prompt_tokens=600, output_tokens=1290)  # 2025: no modalities
    image = billed_usage(old_format, image_call=True)
    assert (image.output_text, image.output_image) == (0, 1290)
    text = billed_usage(old_format, image_call=False)
    assert (text.output_text, text.output_image) == (1290, 0)


def test_model_prices_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "MODEL_PRICES", '{"gemini-3.5-flash-lite": {"from_date": "2027-01-01", "output_text": 2}}'
    )
    monkeypatch.setenv("BOOK_BUDGET_USD", "1.5")
    settings = Settings(_env_file=None)
    (override,) = settings.model_prices["gemini-3.5-flash-lite"]
    assert override.from_date == date(2027, 1, 1) and override.output_text == 2
    assert settings.book_budget_usd == 1.5
    monkeypatch.setenv("MODEL_PRICES", '{"gemini-3.5-flash-lite": {"output_txt": 2}}')
    with pytest.raises(ValueError, match="output_txt"):
        Settings(_env_file=None)
