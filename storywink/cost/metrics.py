"""The ledger's Prometheus metrics (recorded only inside an activity, like the others).

The SDK's counters count integers, so cost is counted in micro-dollars:
`storywink_model_cost_micro_usd_total / 1e6` is US dollars.
"""

from __future__ import annotations

from typing import Final

from temporalio import activity

from storywink.cost.prices import Usage

MODEL_COST: Final = "storywink_model_cost_micro_usd_total"
MODEL_TOKENS: Final = "storywink_model_tokens_total"
MAYBE_BILLED_CALLS: Final = "storywink_model_calls_maybe_billed_total"
BUDGET_REFUSALS: Final = "storywink_budget_refusals_total"


def call_settled(model: str, kind: str, cost_micro_usd: int | None, usage: Usage | None) -> None:
    meter = activity.metric_meter()
    labels = {"model": model, "kind": kind}
    if cost_micro_usd:
        meter.create_counter(
            MODEL_COST, "Cost of model calls in micro-dollars (known prices).", "uUSD"
        ).add(cost_micro_usd, labels)
    if usage is None:
        return
    tokens = meter.create_counter(MODEL_TOKENS, "Tokens of model calls, by kind.")
    for token_kind, count in (
        ("input", usage.prompt_tokens),
        ("output_text", usage.output_text - usage.thought_tokens),
        ("output_image", usage.output_image),
        ("thinking", usage.thought_tokens),
    ):
        if count:
            tokens.add(count, {**labels, "token_kind": token_kind})


def maybe_billed(model: str, kind: str) -> None:
    activity.metric_meter().create_counter(
        MAYBE_BILLED_CALLS, "Model calls cut off without usage: they may have been billed."
    ).add(1, {"model": model, "kind": kind})


def budget_refused(budget: str) -> None:
    activity.metric_meter().create_counter(
        BUDGET_REFUSALS, "Model calls not made: a budget could not take them."
    ).add(1, {"budget": budget})
