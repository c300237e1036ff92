"""A wrong DATABASE_URL never silently creates a fresh SQLite file: only the commands
meant to create a database (the worker, `storywink db upgrade`, the demo) do; the others
refuse a file that does not exist, naming the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from storywink.demo.sample_book import write_sample_photos
from tests.support import forked_cli
from tests.support.commands import cli_env


@pytest.mark.parametrize(
    "command",
    [
        ["status", "some-book"],
        ["books"],
        ["book", "create", "--photos", "photos", "--title", "T", "--child-name", "Mia"],
        ["page", "set-text", "some-book", "2", "New words."],
        ["illustrate", "some-book"],
        ["story", "some-book"],
    ],
    ids=["status", "books", "book-create", "set-text", "illustrate", "story"],
)
def test_a_command_that_only_uses_the_database_refuses_a_missing_sqlite_file(
    tmp_path: Path, command: list[str]
) -> None:
    write_sample_photos(tmp_path / "photos", 2)
    stray = tmp_path / "nonexistent" / "dir" / "x.db"
    env = {**cli_env(tmp_path), "DATABASE_URL": f"sqlite:///{stray}"}

    result = forked_cli.run(command, cwd=tmp_path, env=env)

    assert result.returncode == 2, result.stderr
    [line] = result.stderr.splitlines()
    assert f"database sqlite:///{stray} (DATABASE_URL): no such file" in line
    assert not stray.parent.parent.exists()


def test_db_upgrade_creates_the_file_it_is_asked_to(tmp_path: Path) -> None:
    wanted = tmp_path / "new" / "x.db"
    env = {**cli_env(tmp_path), "DATABASE_URL": f"sqlite:///{wanted}"}

    upgrade = forked_cli.run(["db", "upgrade"], cwd=tmp_path, env=env)
    status = forked_cli.run(["status", "some-book"], cwd=tmp_path, env=env)

    assert upgrade.returncode == 0, upgrade.stderr
    assert wanted.is_file()
    assert status.returncode == 1 and "book some-book not found" in status.stderr
