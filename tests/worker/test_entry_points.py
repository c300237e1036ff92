"""`python worker.py` refuses to start on bad set-up; `storywink demo` runs end to end."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import jwt
import pytest
from temporalio.testing import WorkflowEnvironment

from tests.support.commands import BIN, clean_env, run_worker_script

pytestmark = pytest.mark.process


@pytest.mark.parametrize(
    ("setting", "value", "named"),
    [
        ("PAGE_RETRY_ATTEMPTS", "0", "PAGE_RETRY_ATTEMPTS"),
        ("ILLUSTRATOR", "gemini", "GEMINI_API_KEY"),
    ],
)
def test_worker_with_invalid_settings_names_them_and_exits(
    tmp_path: Path, setting: str, value: str, named: str
) -> None:
    result = run_worker_script(tmp_path, **{setting: value})
    assert result.returncode == 2
    assert named in result.stderr


def test_worker_without_temporal_does_not_start(tmp_path: Path) -> None:
    result = run_worker_script(tmp_path, TEMPORAL_ADDRESS="127.0.0.1:1")
    assert result.returncode == 2
    assert "cannot reach Temporal at 127.0.0.1:1 (TEMPORAL_ADDRESS)" in result.stderr
    assert "polling" not in result.stderr


def test_demo_illustrates_the_sample_book(
    tmp_path: Path, temporal_env: WorkflowEnvironment
) -> None:
    address = temporal_env.client.service_client.config.target_host
    result = subprocess.run(
        [str(BIN / "storywink"), "demo", "--pages", "3"],
        cwd=tmp_path,
        env=clean_env(
            tmp_path,
            TEMPORAL_ADDRESS=address,
            TEMPORAL_TASK_QUEUE="demo-test",
            TEMPORAL_ILLUSTRATION_TASK_QUEUE="demo-test-pages",
            TEMPORAL_STORY_TASK_QUEUE="demo-test-story",
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "The book is COMPLETED." in result.stderr
    galleries = list((tmp_path / ".data" / "demo").glob("book-*.html"))
    assert len(galleries) == 1
    book_id = galleries[0].stem.removeprefix("book-")
    pictures = sorted((tmp_path / "storage" / "storywink" / book_id / "generated").glob("*.png"))
    assert len(pictures) == 3 and all(re.fullmatch(r"[0-9a-f]{32}\.png", p.name) for p in pictures)
    assert all(p.name in galleries[0].read_text() for p in pictures)
    # The book was created without text: the offline writer's story is on its pages.
    assert "writing the story of book" in result.stderr
    assert "snuggled into bed" in galleries[0].read_text()
    # The live page, signed in as the demo's account with the secret made on first run.
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("Live page:")]
    token = line.split("http://127.0.0.1:8000/#token=", 1)[1].strip()
    secret = (tmp_path / ".data" / "web-jwt-secret").read_text().strip()
    assert jwt.decode(token, secret, algorithms=["HS256"])["sub"] == "cli"
    assert secret not in result.stderr
