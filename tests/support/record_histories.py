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
(`tests/workflows/test_replay.py` checks the histories of that workflow code are there). About a
minute; `--own-venv` installs the release into a venv of its own first (the release's own
dependency versions).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path

import temporalio
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle

from storywink import contract
from tests.support.fakes.gemini_server import Fault
from tests.support.paths import HISTORY_DIR, ROOT
from tests.support.provider_fakes import running_fakes
from tests.support.releases import (
    Release,
    activities_completed,
    checkout,
    release_env,
    start_run,
    wait_for,
)
from tests.support.temporal_server import DevServer

# Page texts the fake Gemini recognises in the image prompt.
FLAG, RETRY, FAIL, SLOW, HOLD = "FLAG-ME", "RETRY-ME", "FAIL-ME", "SLOW-ME", "HOLD-ME"


async def closed(handle: WorkflowHandle[object, object]) -> bool:
    return (await handle.describe()).status != WorkflowExecutionStatus.RUNNING


async def keep(handle: WorkflowHandle[object, object], target: Path, name: str) -> None:
    history = await handle.fetch_history()
    (target / f"{name}.json").write_text(history.to_json())
    print(f"  {name}: {len(history.events)} events")


async def record(release: Release, target: Path) -> list[str]:
    queue = f"record-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as tmp, running_fakes() as fakes:
        work = Path(tmp)
        server = DevServer(work, in_memory=True)
        await server.start()
        worker = None
        try:
            env = release_env(server.address, fakes, work / "storywink.db", queue)
            release.storywink(env, "db", "upgrade")
            worker = release.worker(env, work / "worker.log")
            client = await Client.connect(server.address, data_converter=contract.DATA_CONVERTER)
            fakes.gemini.fail_when(FLAG, Fault.finish("IMAGE_SAFETY"))
            fakes.gemini.fail_when(RETRY, Fault.http(503), times=2)
            fakes.gemini.fail_when(FAIL, Fault.http(503))
            fakes.gemini.fail_when(SLOW, Fault.delay(30))
            fakes.gemini.fail_when(HOLD, Fault.delay(6))

            async def run(texts: list[str]) -> WorkflowHandle[object, object]:
                book = release.create_book(env, work, texts)
                return client.get_workflow_handle(await start_run(server.address, queue, book))

            done = await run(["A calm morning.", "A walk.", "Home again."])
            partial = await run(["Up early.", FLAG, RETRY, FAIL])
            cancelled = await run(["The first page.", SLOW, SLOW])
            mid_run = await run(["One.", "Two.", HOLD])

            # prepare and one page done, two pages in their model call: cancel.
            await wait_for(
                functools.partial(activities_completed, cancelled, 2), 60, "a cancelled page"
            )
            await cancelled.cancel()
            # prepare and two pages done, the third held: the run caught mid-run.
            await wait_for(
                functools.partial(activities_completed, mid_run, 3), 60, "two mid-run pages"
            )
            await keep(mid_run, target, "mid_run")
            for name, handle in [
                ("completed", done),
                ("partial_retried", partial),
                ("cancelled", cancelled),
            ]:
                await wait_for(functools.partial(closed, handle), 90, name)
                await keep(handle, target, name)
            await wait_for(functools.partial(closed, mid_run), 60, "the mid-run run")
            return ["completed", "partial_retried", "cancelled", "mid_run"]
        finally:
            if worker is not None:
                worker.terminate()
                worker.wait(timeout=30)
            server.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("commit", help="the commit whose workflow code recorded the runs")
    parser.add_argument("--own-venv", action="store_true", help="install it into its own venv")
    args = parser.parse_args()
    release = checkout(args.commit, own_venv=args.own_venv)
    target = HISTORY_DIR / release.commit[:7]
    target.mkdir(parents=True, exist_ok=True)
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
