"""Record a release's workflow histories for the replay suite.

    .venv/bin/python -m tests.support.record_histories COMMIT [--own-venv]

Checks COMMIT out as a `git worktree` (`tests/support/releases.py`), runs *its* worker and
*its* `storywink book create` against a real dev server, the fake Gemini and Cloudinary
servers (through the release's own SDK calls) and a SQLite database, and starts each run the
way every release accepts: `temporal workflow start` with plain JSON input. It writes the
runs below to `tests/histories/<commit>/` with a `release.json` saying how they were made:

- `completed`: three pages, all drawn;
- `partial_retried`: four pages, one refused (FLAGGED), one drawn after two 503s, one
  failing every attempt and recorded FAILED;
- `cancelled`: cancelled with a page drawn and two in their model call;
- `mid_run`: caught while its last page is still in its model call.

Run it on the previous landed commit of main before changing anything under `workflows/`
(`tests/test_replay.py` checks the histories of that workflow code are there). About a
minute; `--own-venv` installs the release into a venv of its own first (the release's own
dependency versions).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

import temporalio
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle

from storywink import contract
from storywink.demo.sample_book import sample_photo_bytes
from tests.support.fakes.gemini_server import Fault
from tests.support.provider_fakes import GEMINI_KEY, Fakes, running_fakes
from tests.support.releases import ROOT, Release, checkout
from tests.support.services import tool_path
from tests.support.temporal_server import DevServer

HISTORIES = ROOT / "tests" / "histories"

# Page texts the fake Gemini recognises in the image prompt.
FLAG, RETRY, FAIL, SLOW, HOLD = "FLAG-ME", "RETRY-ME", "FAIL-ME", "SLOW-ME", "HOLD-ME"


def release_env(server: DevServer, fakes: Fakes, work: Path, queue: str) -> dict[str, str]:
    """Settings every release reads (unknown ones are ignored by older releases)."""
    return {
        "TEMPORAL_ADDRESS": server.address,
        "TEMPORAL_TASK_QUEUE": queue,
        "TEMPORAL_ILLUSTRATION_TASK_QUEUE": f"{queue}-illustration",
        "TEMPORAL_STORY_TASK_QUEUE": f"{queue}-story",
        "DATABASE_URL": f"sqlite:///{work / 'storywink.db'}",
        "ILLUSTRATOR": "gemini",
        "STORAGE": "cloudinary",
        "GEMINI_API_KEY": GEMINI_KEY,
        "GEMINI_BASE_URL": fakes.gemini.base_url,
        "CLOUDINARY_URL": fakes.cloudinary_url,
        "STYLE_ASSETS_URL": fakes.gemini.url("/styles/"),
        "ALLOW_PRIVATE_FETCH": "true",
        "MODEL_TIMEOUT_SECONDS": "45",
        "PAGE_START_TO_CLOSE_SECONDS": "60",
        "PAGE_HEARTBEAT_TIMEOUT_SECONDS": "2",
        "PAGE_RETRY_ATTEMPTS": "3",
        "PAGE_RETRY_INITIAL_SECONDS": "0.2",
        "PAGE_RETRY_MAX_SECONDS": "1",
        "ILLUSTRATION_CONCURRENCY": "3",
        "SHUTDOWN_GRACE_SECONDS": "2",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }


def create_book(release: Release, env: Mapping[str, str], work: Path, texts: list[str]) -> str:
    """A STORY_READY book made by the release's own `storywink book create`."""
    photos = work / f"photos-{uuid.uuid4().hex[:6]}"
    photos.mkdir()
    for n in range(1, len(texts) + 1):
        (photos / f"{n:02d}.jpg").write_bytes(sample_photo_bytes(n))
    story = photos.with_suffix(".json")
    story.write_text(json.dumps({"pages": texts}))
    return release.storywink(
        env,
        "book",
        "create",
        "--photos",
        str(photos),
        "--title",
        "Recorded Book",
        "--child-name",
        "Mia",
        "--story",
        str(story),
    ).splitlines()[-1]


async def start_run(address: str, queue: str, book_id: str) -> str:
    """`temporal workflow start` with plain JSON input, as every release accepts it."""
    workflow_id = contract.workflow_id_for(book_id)
    process = await asyncio.create_subprocess_exec(
        tool_path("temporal"),
        "workflow",
        "start",
        "--address",
        address,
        "--type",
        contract.BOOK_ILLUSTRATION_WORKFLOW,
        "--task-queue",
        queue,
        "--workflow-id",
        workflow_id,
        "--input",
        json.dumps({"book_id": book_id}),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"temporal workflow start: {stderr.decode()}")
    return workflow_id


async def completed_activities(handle: WorkflowHandle[object, object]) -> int:
    history = await handle.fetch_history()
    return sum(e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED for e in history.events)


async def wait_for(check: Callable[[], Awaitable[bool]], within: float, what: str) -> None:
    try:
        async with asyncio.timeout(within):
            while not await check():
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise RuntimeError(f"no {what} within {within:g} s (see the worker's log)") from None


async def closed(handle: WorkflowHandle[object, object]) -> bool:
    return (await handle.describe()).status != WorkflowExecutionStatus.RUNNING


async def keep(handle: WorkflowHandle[object, object], target: Path, name: str) -> None:
    history = await handle.fetch_history()
    (target / f"{name}.json").write_text(history.to_json())
    print(f"  {name}: {len(history.events)} events")


async def record(release: Release, target: Path) -> list[str]:
    target.mkdir(parents=True, exist_ok=True)
    queue = f"record-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as tmp, running_fakes() as fakes:
        work = Path(tmp)
        server = DevServer(work, in_memory=True)
        await server.start()
        worker = None
        try:
            env = release_env(server, fakes, work, queue)
            release.storywink(env, "db", "upgrade")
            worker = release.worker(env, work / "worker.log")
            client = await Client.connect(server.address, data_converter=contract.DATA_CONVERTER)
            fakes.gemini.fail_when(FLAG, Fault.finish("IMAGE_SAFETY"))
            fakes.gemini.fail_when(RETRY, Fault.http(503), times=2)
            fakes.gemini.fail_when(FAIL, Fault.http(503))
            fakes.gemini.fail_when(SLOW, Fault.delay(30))
            fakes.gemini.fail_when(HOLD, Fault.delay(6))

            async def run(texts: list[str]) -> WorkflowHandle[object, object]:
                book = create_book(release, env, work, texts)
                return client.get_workflow_handle(await start_run(server.address, queue, book))

            done = await run(["A calm morning.", "A walk.", "Home again."])
            partial = await run(["Up early.", FLAG, RETRY, FAIL])
            cancelled = await run(["The first page.", SLOW, SLOW])
            mid_run = await run(["One.", "Two.", HOLD])

            # prepare and one page done, two pages in their model call: cancel.
            await wait_for(lambda: _at_least(cancelled, 2), 60, "a page of the cancelled run")
            await cancelled.cancel()
            # prepare and two pages done, the third held: the run caught mid-run.
            await wait_for(lambda: _at_least(mid_run, 3), 60, "two pages of the mid-run run")
            await keep(mid_run, target, "mid_run")
            for name, handle in [
                ("completed", done),
                ("partial_retried", partial),
                ("cancelled", cancelled),
            ]:
                await wait_for(lambda h=handle: closed(h), 90, name)
                await keep(handle, target, name)
            await wait_for(lambda: closed(mid_run), 60, "the mid-run run")
            return ["completed", "partial_retried", "cancelled", "mid_run"]
        finally:
            if worker is not None:
                worker.terminate()
                worker.wait(timeout=30)
            server.kill()


async def _at_least(handle: WorkflowHandle[object, object], count: int) -> bool:
    return await completed_activities(handle) >= count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("commit", help="the commit whose workflow code recorded the runs")
    parser.add_argument("--own-venv", action="store_true", help="install it into its own venv")
    args = parser.parse_args()
    release = checkout(args.commit, own_venv=args.own_venv)
    target = HISTORIES / release.commit[:7]
    print(f"recording {release.commit[:7]} into {target.relative_to(ROOT)}")
    names = asyncio.run(record(release, target))
    (target / "release.json").write_text(
        json.dumps(
            {
                "commit": release.commit,
                "recorded": datetime.now(UTC).date().isoformat(),
                "histories": names,
                "how": "python -m tests.support.record_histories "
                + release.commit[:7]
                + (" --own-venv" if args.own_venv else ""),
                "temporalio_of_recorder": temporalio.__version__,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
