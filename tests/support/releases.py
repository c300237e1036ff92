"""An earlier commit's code, run beside today's: its worker and its `storywink` command.

Books in flight during a deploy were started by the code that ran before it. The recorder
(`python -m tests.support.record_histories COMMIT`) keeps histories of such runs for the
replay suite, and the upgrade test hands a book held mid-run from a release's worker to
today's. Both check the release out as a `git worktree` under `.data/releases/`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
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


def workflows_tree(commit: str) -> str:
    """The id of the commit's `workflows/` tree: two commits with the same id run the same
    workflow code, so the histories of one stand for the other."""
    return _git("rev-parse", f"{commit}:workflows")


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
