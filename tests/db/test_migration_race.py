"""Several processes opening the same fresh SQLite file at the same instant all migrate it
safely (a worker and `storywink book create`, or worker replicas, starting together)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

from storywink.db.engine import MIGRATIONS_DIR
from tests.support.paths import ROOT

pytestmark = pytest.mark.process

PROCESSES = 6
ROUNDS = 2

# Announce readiness, wait for the go file, then open (and so migrate) the database.
OPENER = """
import sys, time
from pathlib import Path
from storywink.config import load_settings
from storywink.db.connection import open_database
url, ready, go = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
settings = load_settings(database_url=url)
ready.touch()
while not go.exists():
    time.sleep(0.001)
open_database(settings, create=True).engine.dispose()
"""


def opener_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GEMINI", "GOOGLE", "CLOUDINARY", "DATABASE", "STORAGE"))
    }
    env["PYTHONPATH"] = str(ROOT)
    return env


def open_all_at_once(directory: Path, url: str) -> list[subprocess.CompletedProcess[str]]:
    go = directory / "go"
    ready = [directory / f"ready-{n}" for n in range(PROCESSES)]
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", OPENER, url, str(ready_file), str(go)],
            cwd=directory,
            env=opener_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for ready_file in ready
    ]
    deadline = time.monotonic() + 60
    while not all(path.exists() for path in ready):
        assert time.monotonic() < deadline, "openers did not get ready within 60 s"
        assert all(p.poll() is None for p in processes), [p.communicate() for p in processes]
        time.sleep(0.01)
    go.touch()
    results = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=120)
        results.append(
            subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
        )
    return results


def schema_revision(url: str) -> str | None:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


@pytest.mark.parametrize("round_number", range(ROUNDS))
def test_processes_migrating_a_fresh_sqlite_file_at_once_all_start(
    tmp_path: Path, round_number: int
) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    results = open_all_at_once(tmp_path, url)
    failures = [result.stderr[-1500:] for result in results if result.returncode != 0]
    assert failures == [], f"{len(failures)} of {PROCESSES} failed in round {round_number}"
    head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    assert schema_revision(url) == head
