"""Our commands as a user runs them: `python worker.py` and the `storywink` console script
in subprocesses, with a clean environment of their own."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from PIL import Image, ImageChops
from sqlalchemy import func, select

from storywink.config import Settings
from storywink.db.engine import make_engine, make_session_factory, upgrade_to_head
from storywink.db.models import Book, Page
from storywink.providers.local_storage import LocalImageStore
from tests.support import forked_cli
from tests.support.paths import WORKER_SCRIPT

BIN = Path(sys.executable).parent


def clean_env(tmp_path: Path, **values: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GEMINI", "GOOGLE", "CLOUDINARY", "DATABASE", "TEMPORAL"))
    }
    env.update(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
            "STORAGE_DIR": str(tmp_path / "storage"),
            **values,
        }
    )
    return env


def run_worker(tmp_path: Path, **values: str) -> subprocess.CompletedProcess[str]:
    """`python worker.py` until it exits, forked from a process that imported it."""
    return forked_cli.run([], cwd=tmp_path, env=clean_env(tmp_path, **values), program="worker")


def run_worker_script(tmp_path: Path, **values: str) -> subprocess.CompletedProcess[str]:
    """`python worker.py` until it exits, started as a user starts it."""
    return subprocess.run(
        [sys.executable, str(WORKER_SCRIPT)],
        cwd=tmp_path,
        env=clean_env(tmp_path, **values),
        capture_output=True,
        text=True,
        timeout=60,
    )


STORYWINK = Path(sys.executable).parent / "storywink"
SECRET_NAMES = {"GEMINI_API_KEY", "GOOGLE_API_KEY", "CLOUDINARY_URL", "ILLUSTRATOR", "STORAGE"}


def cli_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.upper() not in SECRET_NAMES}
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'storywink.db'}",
        STORAGE_DIR=str(tmp_path / "storage"),
        # Wide enough that error panels never wrap a message.
        COLUMNS="400",
        TERMINAL_WIDTH="400",
    )
    return env


def storywink(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return forked_cli.run(args, cwd=tmp_path, env=cli_env(tmp_path))


async def storywink_on(settings: Settings, tmp_path: Path, *args: str) -> tuple[int, str, str]:
    """`storywink ARGS` in a subprocess against the settings' database and Temporal (for a
    worker running in the test's process): exit code, stdout, stderr."""
    env = cli_env(tmp_path)
    env.update(
        DATABASE_URL=settings.resolved_database_url,
        TEMPORAL_ADDRESS=settings.temporal_address,
        TEMPORAL_TASK_QUEUE=settings.temporal_task_queue,
    )
    process = await asyncio.create_subprocess_exec(
        str(STORYWINK),
        *args,
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def plain(text: str) -> str:
    """stderr without the box drawing of the error panel, whitespace collapsed."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


def write_story(tmp_path: Path, pages: list[str]) -> Path:
    path = tmp_path / "story.json"
    path.write_text(json.dumps({"pages": pages}), encoding="utf-8")
    return path


_template: Path | None = None


def ensure_database(tmp_path: Path) -> None:
    """The CLI's SQLite file, migrated, as a worker leaves it (commands other than the
    worker, `db upgrade` and the demo refuse to create one): a copy of one migrated once."""
    global _template
    target = tmp_path / "storywink.db"
    if target.exists():
        return
    if _template is None:
        template = Path(tempfile.mkdtemp(prefix="storywink-template-")) / "storywink.db"
        engine = make_engine(f"sqlite:///{template}")
        upgrade_to_head(engine)
        engine.dispose()
        _template = template
    shutil.copyfile(_template, target)


def create(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    ensure_database(tmp_path)
    return storywink(
        tmp_path, "book", "create", "--photos", "photos", "--title", "Mia's Day",
        "--child-name", "Mia", *extra,
    )  # fmt: skip


def status_json(tmp_path: Path, book_id: str) -> dict[str, Any]:
    result = storywink(tmp_path, "status", book_id, "--json")
    assert result.returncode == 0, result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def book_count(tmp_path: Path) -> int:
    database = tmp_path / "storywink.db"
    if not database.exists():
        return 0
    engine = make_engine(f"sqlite:///{database}")
    try:
        with make_session_factory(engine)() as session:
            return session.scalar(select(func.count()).select_from(Book)) or 0
    finally:
        engine.dispose()


def original_photos(tmp_path: Path, book_id: str) -> list[Path]:
    engine = make_engine(f"sqlite:///{tmp_path / 'storywink.db'}")
    try:
        with make_session_factory(engine)() as session:
            asset_ids = session.scalars(
                select(Page.original_asset_id)
                .where(Page.book_id == book_id)
                .order_by(Page.page_number)
            ).all()
    finally:
        engine.dispose()
    store = LocalImageStore(tmp_path / "storage")
    return [store.path_for(asset_id or "") for asset_id in asset_ids]


def same_pixels(a: Path, b: Path) -> bool:
    with Image.open(a) as first, Image.open(b) as second:
        return ImageChops.difference(first.convert("RGB"), second.convert("RGB")).getbbox() is None
