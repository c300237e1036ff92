"""The illustration client's names of an earlier release still answer, with a warning."""

from __future__ import annotations

from typing import cast

import pytest
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client

from storywink.illustration.client import IllustrationClient

EARLIER_NAMES = {
    "progress": "illustration_progress",
    "wait_for_end": "wait_for_illustration_end",
    "wait": "wait_for_illustration",
    "workflow_working_on": "illustration_workflow_working_on",
}


@pytest.mark.parametrize(("old", "new"), EARLIER_NAMES.items())
async def test_an_earlier_name_calls_the_new_one_and_warns(
    monkeypatch: pytest.MonkeyPatch, old: str, new: str
) -> None:
    client = IllustrationClient(cast(Client, None), cast(sessionmaker[Session], None), "q")
    calls: list[str] = []

    async def new_call(book_id: str) -> str:
        calls.append(book_id)
        return f"answer of {new}"

    monkeypatch.setattr(client, new, new_call)
    with pytest.warns(DeprecationWarning, match=f"IllustrationClient.{old} .*use {new}"):
        answer = await getattr(client, old)("book-1")

    assert (answer, calls) == (f"answer of {new}", ["book-1"])
