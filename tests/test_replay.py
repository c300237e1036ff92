"""Every recorded history replays against the current workflow code.

Runs are in flight during every deploy: a workflow change that would make the new code
decide differently on an old run's history fails here with the nondeterminism error.
tests/histories/README.md says how to record a history and when one may be retired.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from storywink import contract
from storywink.contract import BookOutcome
from workflows.book_illustration import BookIllustration
from workflows.story_generation import StoryGeneration

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def history(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(path.stem, path.read_text())


def replayer(*workflows: type) -> Replayer:
    return Replayer(workflows=list(workflows), data_converter=contract.DATA_CONVERTER)


def test_the_histories_cover_the_runs_a_deploy_meets() -> None:
    names = {path.stem for path in HISTORIES}
    assert {"completed", "partial_flagged_failed_retried", "cancelled"} <= names
    assert any(name.startswith("reset_running") for name in names)
    assert {"story_ready", "story_failed_after_retries", "priority_with_fairness_key"} <= names


@pytest.mark.parametrize("path", HISTORIES, ids=lambda path: path.stem)
async def test_a_recorded_history_replays_on_the_current_code(path: Path) -> None:
    result = await replayer(BookIllustration, StoryGeneration).replay_workflow(history(path))
    assert result.replay_failure is None


# The pattern for a change that would break old runs: guard it with `workflow.patched`.
# New runs take the new path and record a marker; old runs replay the old path.


@workflow.defn(name=contract.BOOK_ILLUSTRATION_WORKFLOW)
class WithANewFirstStep(BookIllustration):
    """A new first step, unguarded: old runs' histories do not have it."""

    @workflow.run
    async def run(self, *inputs: object) -> BookOutcome:
        await workflow.sleep(1)
        return await super().run(*inputs)


@workflow.defn(name=contract.BOOK_ILLUSTRATION_WORKFLOW)
class WithANewFirstStepPatched(BookIllustration):
    """The same step behind `workflow.patched`, as a real change would ship it."""

    @workflow.run
    async def run(self, *inputs: object) -> BookOutcome:
        if workflow.patched("new-first-step"):
            await workflow.sleep(1)
        return await super().run(*inputs)


async def test_an_unguarded_change_fails_replay_and_the_patched_one_replays() -> None:
    recorded = history(HISTORIES[0])  # an illustration run

    unguarded = await replayer(WithANewFirstStep).replay_workflow(
        recorded, raise_on_replay_failure=False
    )
    patched = await replayer(WithANewFirstStepPatched).replay_workflow(recorded)

    assert unguarded.replay_failure is not None
    assert "nondetermin" in str(unguarded.replay_failure).lower()
    assert patched.replay_failure is None
