"""Where the repository's files are, for the tests and benchmarks that run or read them:
one root, wherever in tests/ the test itself sits."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).parents[2]  # no resolve(): the replay test imports this in the sandbox
WORKER_SCRIPT = ROOT / "worker.py"
HISTORY_DIR = ROOT / "tests" / "histories"
