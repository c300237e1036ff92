"""An earlier commit's code, run beside today's: its worker and its `storywink` command.

Books in flight during a deploy were started by the code that ran before it. The recorder
(`python -m tests.support.record_histories COMMIT`) keeps histories of such runs for the
replay suite, and the upgrade test hands a book held mid-run from a release's worker to
today's. Both check the release out as a `git worktree` under `.data/releases/`.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle

from storywink import contract
from storywink.config import Settings
from storywink.demo.sample_book import sample_photo_bytes
from tests.support.paths import ROOT
from tests.support.provider_fakes import GEMINI_KEY, Fakes
from tests.support.services import tool_path

RELEASES_DIR = ROOT / ".data" / "releases"


class ReleaseUnavailable(Exception):
    """The commit is not in this clone (a shallow clone or a tarball has no history)."""


def _git(*args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise ReleaseUnavailable(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


def full_commit(commit: str) -> str:
    return _git("rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}")


WorkflowCode = frozenset[tuple[str, str]]  # (path, blob id) of each file under workflows/


def workflow_code(commit: str) -> WorkflowCode:
    """The commit's workflow code: two commits with the same run the same workflows, so
    the histories recorded from one stand for the other."""
    listing = _git("ls-tree", "-r", commit, "--", "workflows/")
    return frozenset(
        (path, meta.split()[2])
        for meta, path in (line.split("\t") for line in listing.splitlines())
    )


def working_workflow_code() -> WorkflowCode:
    """The workflow code of the working tree, changes not yet committed included."""
    paths = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "workflows").glob("*.py"))
    blobs = _git("hash-object", "--", *paths).splitlines()
    return frozenset(zip(paths, blobs, strict=True))


def previous_workflow_code(current: WorkflowCode) -> str:
    """The newest commit on main's line (first parents from HEAD) whose workflow code differs
    from `current`: the code the runs in flight at `current`'s deploy were started on."""
    for commit in _git("rev-list", "--first-parent", "HEAD").splitlines():
        if workflow_code(commit) != current:
            return commit
    raise ReleaseUnavailable("no earlier workflow code in this clone's history")


@dataclass(frozen=True)
class Release:
    """A checked-out commit and the interpreter that runs its code."""

    commit: str
    tree: Path
    python: Path

    def env(self, values: Mapping[str, str]) -> dict[str, str]:
        """`values` over this process's environment, with the release's code first on the
        path (today's interpreter would import today's package otherwise)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GEMINI", "GOOGLE"))}
        env.update(values)
        env["PYTHONPATH"] = str(self.tree)
        return env

    def worker(self, values: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
        """The release's `python worker.py`."""
        with log.open("ab") as out:
            return subprocess.Popen(
                [str(self.python), "worker.py"],
                cwd=self.tree,
                env=self.env(values),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def storywink(self, values: Mapping[str, str], *args: str) -> str:
        """The release's `storywink` command; its standard output, or an error with its own."""
        done = subprocess.run(
            [str(self.python), "-c", "from storywink.cli import app; app()", *args],
            cwd=self.tree,
            env=self.env(values),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"storywink {' '.join(args)} ({self.commit[:7]}): {done.stderr}")
        return done.stdout.strip()

    def create_book(self, env: Mapping[str, str], work: Path, texts: list[str]) -> str:
        """A STORY_READY book made by the release's own `storywink book create`."""
        photos = work / f"photos-{uuid.uuid4().hex[:6]}"
        photos.mkdir()
        for n in range(1, len(texts) + 1):
            (photos / f"{n:02d}.jpg").write_bytes(sample_photo_bytes(n))
        story = photos.with_suffix(".json")
        story.write_text(json.dumps({"pages": texts}))
        return self.storywink(
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


def release_env(address: str, fakes: Fakes, database: Path, queue: str) -> dict[str, str]:
    """Settings every release reads (older releases ignore the ones they do not know): the
    fakes through the real SDKs, a SQLite file, short page timeouts and retries."""
    return {
        "TEMPORAL_ADDRESS": address,
        "TEMPORAL_TASK_QUEUE": queue,
        "TEMPORAL_ILLUSTRATION_TASK_QUEUE": f"{queue}-illustration",
        "TEMPORAL_STORY_TASK_QUEUE": f"{queue}-story",
        "DATABASE_URL": f"sqlite:///{database}",
        "ILLUSTRATOR": "gemini",
        "STORAGE": "cloudinary",
        "GEMINI_API_KEY": GEMINI_KEY,
        "GEMINI_BASE_URL": fakes.gemini.base_url,
        # Today's model: an older release's default may be one Google (and the fake) retired.
        "GEMINI_IMAGE_MODEL": str(Settings.model_fields["gemini_image_model"].default),
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


async def start_run(address: str, queue: str, book_id: str) -> str:
    """`temporal workflow start` with plain JSON input, as every release accepts it."""
    workflow_id = contract.illustration_workflow_id(book_id)
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


async def activities_completed(handle: WorkflowHandle[Any, Any], at_least: int) -> bool:
    """Whether the run has completed `at_least` activities (prepare counts as one)."""
    history = await handle.fetch_history()
    done = sum(e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED for e in history.events)
    return done >= at_least


async def wait_for(check: Callable[[], Awaitable[bool]], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"no {what} within {within:g} s (see the worker's log)")


def checkout(commit: str, own_venv: bool = False) -> Release:
    """The commit as a worktree under `.data/releases/<commit>` (kept for the next call).

    `own_venv`: install the release into a venv of its own, with the dependency versions
    its `pyproject.toml` resolves to today (the recorder); otherwise today's interpreter
    runs its code (the upgrade test: the releases share the same dependency set).
    """
    sha = full_commit(commit)
    tree = RELEASES_DIR / sha[:12]
    if not (tree / "worker.py").exists():
        RELEASES_DIR.mkdir(parents=True, exist_ok=True)
        _git("worktree", "prune")
        _git("worktree", "add", "--detach", "--force", str(tree), sha)
    python = Path(sys.executable)
    if own_venv:
        python = tree / ".venv" / "bin" / "python"
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(tree / ".venv")], check=True)
            subprocess.run(
                [str(python), "-m", "pip", "install", "--quiet", "-e", str(tree)], check=True
            )
    return Release(commit=sha, tree=tree, python=python)
