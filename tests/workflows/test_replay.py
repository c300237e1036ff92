"""Every recorded history replays against the current workflow code.

Runs are in flight during every deploy: a workflow change that would make the new code
decide differently on an old run's history fails here with the nondeterminism error.
The histories of the workflow code before this one must be here (recorded from that
commit by `python -m tests.support.record_histories`); a release whose runs cannot replay
says so in its `release.json`, and its runs are moved by the worker at start
(storywink/temporal/upgrade.py; tests/temporal/test_upgrade.py proves it).
tests/histories/README.md says how to record a history and when one may be retired.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer
from temporalio.workflow import NondeterminismError

from storywink import contract
from storywink.contract import BookOutcome
from tests.support.paths import HISTORY_DIR
from tests.support.releases import (
    ReleaseUnavailable,
    previous_workflow_code,
    workflow_code,
    working_workflow_code,
)
from tests.support.services import missing
from workflows.book_erasure import BookErasure
from workflows.book_illustration import BookIllustration
from workflows.page_redraw import PageRedraw
from workflows.story_generation import StoryGeneration

# Every workflow a worker runs (storywink.worker.assembly.WORKFLOWS; not imported from there:
# the sandbox re-imports this module to validate the test's own workflows below).
WORKFLOWS = (BookIllustration, PageRedraw, StoryGeneration, BookErasure)
# One folder a release: its runs and `release.json` (the commit, how they were recorded).
RELEASES = {
    path.parent: json.loads(path.read_text()) for path in HISTORY_DIR.glob("*/release.json")
}
STRANDED = {folder for folder, release in RELEASES.items() if release.get("replays") is False}
HISTORIES = sorted(
    path
    for path in HISTORY_DIR.glob("**/*.json")
    if path.name != "release.json" and path.parent not in STRANDED
)
STRANDED_HISTORIES = sorted(
    path for folder in STRANDED for path in folder.glob("*.json") if path.name != "release.json"
)


def history_id(path: Path) -> str:
    return str(path.relative_to(HISTORY_DIR).with_suffix(""))


def history(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(path.stem, path.read_text())


def replayer(*workflows: type) -> Replayer:
    return Replayer(workflows=list(workflows), data_converter=contract.DATA_CONVERTER)


def test_the_histories_cover_the_runs_a_deploy_meets() -> None:
    names = {path.stem for path in HISTORIES}
    assert {"completed", "partial_flagged_failed_retried", "cancelled"} <= names
    assert any(name.startswith("reset_running") for name in names)
    assert {"story_ready", "story_failed_after_retries", "priority_with_fairness_key"} <= names
    assert {"redraw_completed_partial_book", "redraw_joined_by_a_second_page"} <= names
    assert {"erased_completed", "erased_after_a_cancel"} <= names


def test_the_replayer_knows_every_workflow_a_worker_runs() -> None:
    from storywink.worker import assembly

    assert set(WORKFLOWS) == set(assembly.WORKFLOWS)


@pytest.mark.parametrize("path", HISTORIES, ids=history_id)
async def test_a_recorded_history_replays_on_the_current_code(path: Path) -> None:
    result = await replayer(*WORKFLOWS).replay_workflow(history(path))
    assert result.replay_failure is None


@pytest.mark.parametrize("path", STRANDED_HISTORIES, ids=history_id)
async def test_a_stranded_releases_history_is_refused_as_nondeterministic(path: Path) -> None:
    """What the worker's start-up move looks for: were this code to replay such a run, or
    to fail it otherwise, the release's `release.json` and the upgrade path would be wrong."""
    result = await replayer(*WORKFLOWS).replay_workflow(
        history(path), raise_on_replay_failure=False
    )
    assert isinstance(result.replay_failure, NondeterminismError)


def test_the_histories_hold_runs_of_the_workflow_code_before_this_one() -> None:
    """The runs in flight when this code is deployed were started by the workflow code
    before it: their histories must be here, recorded from a commit with that code."""
    try:
        previous = previous_workflow_code(working_workflow_code())
        recorded = {workflow_code(release["commit"]) for release in RELEASES.values()}
    except ReleaseUnavailable as exc:
        missing(f"the replay check needs this clone's git history: {exc}")
    assert workflow_code(previous) in recorded, (
        f"workflows/ differs from {previous[:7]}'s and no history of that code is recorded: "
        f"run `.venv/bin/python -m tests.support.record_histories {previous[:7]}` and commit "
        "tests/histories/ (tests/histories/README.md)"
    )


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
    recorded = history(HISTORY_DIR / "completed.json")  # an illustration run

    unguarded = await replayer(WithANewFirstStep).replay_workflow(
        recorded, raise_on_replay_failure=False
    )
    patched = await replayer(WithANewFirstStepPatched).replay_workflow(recorded)

    assert unguarded.replay_failure is not None
    assert "nondetermin" in str(unguarded.replay_failure).lower()
    assert patched.replay_failure is None
