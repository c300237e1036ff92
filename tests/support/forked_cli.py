"""`storywink ARGS` in a process of its own, forked from one that has imported the CLI.

A `storywink` process spends about a second of CPU importing temporalio, SQLAlchemy and
alembic before it reads its arguments; the CLI tests run dozens of commands. Here one
process per test session (per xdist worker) imports `storywink.cli` once and forks a child
per command: the child gets the command's working directory, environment, argv and its own
stdin/stdout/stderr, runs the console script's `app()` and exits with its code, like
`.venv/bin/storywink` does. (test_entry_points runs the installed script itself.)

The forking process never connects to anything, so no thread or runtime is forked mid-use.
Run as a module, it is that forking process; imported, `run()` is the client.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

BIN = Path(sys.executable).parent
STORYWINK = BIN / "storywink"
# Its own root, not tests.support.paths: run as a script, it imports nothing of tests/.
ROOT = Path(__file__).resolve().parents[2]
WORKER_SCRIPT = ROOT / "worker.py"


def _child(request: dict[str, Any]) -> None:
    """In the forked child: become `storywink ARGS` and exit with its code."""
    code: object = 1
    try:
        signal.alarm(int(request["timeout"]))  # SIGALRM ends a command that hangs
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        for fd, (path, mode) in enumerate(
            [
                (os.devnull, os.O_RDONLY),
                (request["stdout"], os.O_WRONLY),
                (request["stderr"], os.O_WRONLY),
            ]
        ):
            opened = os.open(path, mode)
            os.dup2(opened, fd)
            os.close(opened)
        entry: Callable[[], object]
        if request["program"] == "worker":
            from storywink.worker import process

            sys.argv, sys.path[0], entry = [str(WORKER_SCRIPT)], str(ROOT), process.run
        else:
            from storywink import cli

            sys.argv, sys.path[0], entry = [str(STORYWINK)], str(BIN), cli.app
        sys.argv += request["args"]
        try:
            entry()
            code = 0
        except SystemExit as exit_:
            code = exit_.code
        if code is None:
            code = 0
        elif not isinstance(code, int):
            print(code, file=sys.stderr)
            code = 1
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code if isinstance(code, int) else 1)


def serve() -> None:
    """The forking process: one JSON request a line on stdin, `{"returncode": n}` back."""
    # The point: imported once, before any fork.
    import storywink.cli
    import storywink.worker.process  # noqa: F401

    replies = sys.stdout
    for line in sys.stdin:
        request = json.loads(line)
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _child(request)
        _, status = os.waitpid(pid, 0)
        replies.write(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}) + "\n")
        replies.flush()


class _Forker:
    def __init__(self, env: dict[str, str]) -> None:
        self.lock = threading.Lock()
        self.process = subprocess.Popen(
            # As a script, not `-m`: click names the program after __main__'s package.
            [sys.executable, str(Path(__file__).resolve())],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def run(
        self, program: str, args: list[str], cwd: Path, env: dict[str, str], timeout: float
    ) -> subprocess.CompletedProcess[str]:
        with self.lock, tempfile.TemporaryDirectory() as scratch:
            out, err = Path(scratch) / "stdout", Path(scratch) / "stderr"
            out.touch()
            err.touch()
            request = {
                "program": program,
                "args": args,
                "cwd": str(cwd),
                "env": env,
                "stdout": str(out),
                "stderr": str(err),
                "timeout": max(1, round(timeout)),
            }
            stdin, stdout = self._pipes()
            stdin.write(json.dumps(request) + "\n")
            stdin.flush()
            reply = stdout.readline()
            if not reply:
                raise RuntimeError("the CLI forking process has exited")
            code = json.loads(reply)["returncode"]
            command = [str(WORKER_SCRIPT if program == "worker" else STORYWINK), *args]
            stdout_text, stderr_text = out.read_text(), err.read_text()
            if code == -signal.SIGALRM:
                raise subprocess.TimeoutExpired(command, timeout, stdout_text, stderr_text)
            return subprocess.CompletedProcess(command, code, stdout_text, stderr_text)

    def _pipes(self) -> tuple[IO[str], IO[str]]:
        assert self.process.stdin is not None and self.process.stdout is not None
        return self.process.stdin, self.process.stdout

    def close(self) -> None:
        stdin, _ = self._pipes()
        stdin.close()
        self.process.wait(timeout=10)


# One forking process per terminal width: rich and typer read COLUMNS and TERMINAL_WIDTH
# when imported, so a command must be forked from a process that saw its own.
_forkers: dict[tuple[str | None, str | None], _Forker] = {}
_WIDTH_NAMES = ("COLUMNS", "TERMINAL_WIDTH")


def run(
    args: list[str] | tuple[str, ...],
    *,
    cwd: Path,
    env: dict[str, str],
    timeout: float = 60,
    program: str = "storywink",
) -> subprocess.CompletedProcess[str]:
    """`storywink ARGS` (or `python worker.py ARGS`) as `subprocess.run(...,
    capture_output=True, text=True)` would run it, in a forked child."""
    width = (env.get("COLUMNS"), env.get("TERMINAL_WIDTH"))
    forker = _forkers.get(width)
    if forker is None or forker.process.poll() is not None:
        base = {k: v for k, v in os.environ.items() if k not in _WIDTH_NAMES}
        base.update({k: v for k, v in zip(_WIDTH_NAMES, width, strict=True) if v is not None})
        forker = _forkers[width] = _Forker(base)
    return forker.run(program, list(args), cwd, env, timeout)


def stop() -> None:
    while _forkers:
        _, forker = _forkers.popitem()
        forker.close()


if __name__ == "__main__":
    serve()
