"""The production connection: a `temporal.toml` profile and the TEMPORAL_* variables the
`temporal` CLI reads connect worker and client; TLS is verified against a real TLS endpoint;
the API key reaches the server as the SDK sends it and never shows in logs or messages."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from storywink.config import ConfigurationError, Settings, load_settings
from storywink.contract import BookStatus
from storywink.db.connection import Database
from storywink.temporal.connection import TemporalUnavailable, connect_temporal
from tests.support.commands import BIN, clean_env
from tests.support.helpers import create_book, photo_urls, start
from tests.support.paths import WORKER_SCRIPT
from tests.support.services import test_settings, tool_path
from tests.support.tls_proxy import make_test_ca, tls_proxy
from tests.support.worker_processes import Replica, free_port, wait_until_ready

API_KEY = "tmprl-test-apikey-7f3c9a1e5b2d4f60"


def profile_toml(name: str, address: str, *, api_key: str = "", ca_cert: Path | None = None) -> str:
    """A `temporal.toml` with one profile, as `temporal config set` writes it."""
    lines = [f"[profile.{name}]", f'address = "{address}"', 'namespace = "default"']
    if api_key:
        lines.append(f'api_key = "{api_key}"')
    if ca_cert is not None:
        lines += [f"[profile.{name}.tls]", f'server_ca_cert_path = "{ca_cert}"']
    return "\n".join(lines) + "\n"


def temporal_config_set(config_file: Path, profile: str, **props: str) -> None:
    """Write a profile with the `temporal` CLI, as docs/connecting.md says."""
    command = [tool_path("temporal"), "config", "set", "--profile", profile]
    for prop, value in props.items():
        subprocess.run(
            [*command, "--prop", prop, "--value", value],
            env={**os.environ, "TEMPORAL_CONFIG_FILE": str(config_file)},
            check=True,
            capture_output=True,
        )


def profile_env(settings: Settings, tmp_path: Path, config_file: Path) -> dict[str, str]:
    """The environment of a process whose only Temporal settings are TEMPORAL_CONFIG_FILE
    and TEMPORAL_PROFILE (plus its test queues), on the test's database and storage."""
    env = clean_env(
        tmp_path,
        TEMPORAL_CONFIG_FILE=str(config_file),
        TEMPORAL_PROFILE="storywink",
        TEMPORAL_TASK_QUEUE=settings.temporal_task_queue,
        TEMPORAL_ILLUSTRATION_TASK_QUEUE=settings.temporal_illustration_task_queue,
        DATABASE_URL=settings.resolved_database_url,
        STORAGE_DIR=str(settings.storage_dir),
        ILLUSTRATOR="local",
        LOCAL_IMAGE_SIZE="256",
        STORAGE="local",
        ALLOW_PRIVATE_FETCH="true",
        LOG_LEVEL="DEBUG",
        SHUTDOWN_GRACE_SECONDS="2",
        NO_PROXY="127.0.0.1,localhost",
    )
    assert not {"TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "TEMPORAL_API_KEY"} & env.keys()
    return env


@contextmanager
def profile_worker(settings: Settings, tmp_path: Path, config_file: Path) -> Iterator[Replica]:
    """`python worker.py` on `profile_env`."""
    health_port = free_port()
    env = profile_env(settings, tmp_path, config_file)
    env.update(HEALTH_PORT=str(health_port), OPS_HOST="127.0.0.1")
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, str(WORKER_SCRIPT)],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield Replica("profile-worker", process, log, health_port)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def complete_a_book(
    temporal_env: WorkflowEnvironment, settings: Settings, database: Database, replica: Replica
) -> None:
    await wait_until_ready([replica], within=30)
    book_id = create_book(database, photo_urls(settings.storage_dir / "photos", 2))
    handle = await start(temporal_env.client, settings, book_id)
    outcome = await handle.result()
    assert outcome.status is BookStatus.COMPLETED, outcome


@pytest.mark.process
async def test_a_profile_file_alone_connects_a_worker_and_a_book_completes(
    temporal_env: WorkflowEnvironment, database: Database, database_url: str, tmp_path: Path
) -> None:
    settings = test_settings(temporal_env, database_url, tmp_path)
    config_file = tmp_path / "temporal.toml"
    temporal_config_set(
        config_file, "storywink", address=settings.temporal_address, namespace="default"
    )

    with profile_worker(settings, tmp_path, config_file) as replica:
        await complete_a_book(temporal_env, settings, database, replica)

    log = replica.log.read_text()
    assert f"temporal ok ({settings.temporal_address}, namespace default)" in log, log


@pytest.mark.process
async def test_tls_and_api_key_from_the_profile_reach_the_server_from_worker_and_cli_never_the_logs(
    temporal_env: WorkflowEnvironment, database: Database, database_url: str, tmp_path: Path
) -> None:
    settings = test_settings(temporal_env, database_url, tmp_path)
    ca = make_test_ca(tmp_path / "ca")
    async with tls_proxy(settings.temporal_address, ca.server_context()) as proxy:
        config_file = tmp_path / "temporal.toml"
        temporal_config_set(
            config_file,
            "storywink",
            address=proxy.address,
            namespace="default",
            api_key=API_KEY,
            **{"tls.server_ca_cert_path": str(ca.ca_cert)},
        )
        with profile_worker(settings, tmp_path, config_file) as replica:
            await wait_until_ready([replica], within=30)
            book_id = create_book(database, photo_urls(settings.storage_dir / "photos", 2))
            # The CLI starts the run and follows it, through the same profile.
            cli = await asyncio.create_subprocess_exec(
                str(BIN / "storywink"),
                "illustrate",
                book_id,
                cwd=tmp_path,
                env=profile_env(settings, tmp_path, config_file),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            async with asyncio.timeout(30):
                output, _ = await cli.communicate()
    cli_output = output.decode()
    assert cli.returncode == 0, cli_output
    assert f"book {book_id}: COMPLETED" in cli_output, cli_output
    assert API_KEY not in cli_output

    polls = [r for r in proxy.requests if r.get(":path", "").endswith("/PollWorkflowTaskQueue")]
    assert polls, f"no poll decoded from {len(proxy.requests)} requests"
    assert all(r.get("authorization") == f"Bearer {API_KEY}" for r in proxy.requests)
    log = replica.log.read_text()
    assert f"temporal ok ({proxy.address}, namespace default)" in log, log
    assert "DEBUG" in log  # the most talkative level, and still no key
    assert API_KEY not in log


async def test_tls_is_verified_and_refusals_never_show_the_key(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    target = temporal_env.client.service_client.config.target_host
    ca, other_ca = make_test_ca(tmp_path / "ca"), make_test_ca(tmp_path / "other")
    config_file = tmp_path / "temporal.toml"
    async with tls_proxy(target, ca.server_context()) as proxy:
        config_file.write_text(
            profile_toml("trusted", proxy.address, api_key=API_KEY, ca_cert=ca.ca_cert)
            + profile_toml("untrusted", proxy.address, api_key=API_KEY, ca_cert=other_ca.ca_cert)
        )
        trusted_settings = load_settings(
            temporal_config_file=config_file, temporal_profile="trusted"
        )
        client = await connect_temporal(trusted_settings)
        assert await client.service_client.check_health()

        untrusted = load_settings(temporal_config_file=config_file, temporal_profile="untrusted")
        with pytest.raises(TemporalUnavailable) as refused:
            await connect_temporal(untrusted)
    message = str(refused.value)
    assert f"cannot reach Temporal at {proxy.address} (address of Temporal profile" in message
    assert "with TLS and API key" in message
    assert "InvalidCertificate" in message  # refused by the CA check, not by the network
    assert API_KEY not in message
    assert API_KEY not in repr(untrusted)


def test_explicit_settings_win_over_the_profile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_file = tmp_path / "temporal.toml"
    config_file.write_text(
        profile_toml("storywink", "profile-host:7233", api_key=API_KEY).replace(
            'namespace = "default"', 'namespace = "profile-ns"'
        )
    )
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(config_file))
    monkeypatch.setenv("TEMPORAL_PROFILE", "storywink")
    for name in ("TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "TEMPORAL_API_KEY"):
        monkeypatch.delenv(name, raising=False)

    from_profile = load_settings()
    assert (from_profile.temporal_address, from_profile.temporal_namespace) == (
        "profile-host:7233",
        "profile-ns",
    )
    assert from_profile.temporal_client_profile().api_key == API_KEY
    assert API_KEY not in repr(from_profile)

    monkeypatch.setenv("TEMPORAL_ADDRESS", "env-host:7233")
    explicit = load_settings(temporal_namespace="mine")
    assert (explicit.temporal_address, explicit.temporal_namespace) == ("env-host:7233", "mine")
    assert explicit.temporal_origin("address") == "TEMPORAL_ADDRESS"
    # TEMPORAL_* variables override the file's values, as for the CLI.
    monkeypatch.setenv("TEMPORAL_API_KEY", "from-env")
    assert explicit.temporal_client_profile().api_key == "from-env"


@pytest.mark.parametrize(
    ("content", "values", "named"),
    [
        ("", {"temporal_profile": "missing"}, "Profile 'missing' not found"),
        (f'[profile.storywink\napi_key = "{API_KEY}"\n', {}, "TOML parse error"),
        (None, {}, "does not exist"),
    ],
)
def test_a_bad_profile_is_refused_without_showing_its_key(
    tmp_path: Path, content: str | None, values: dict[str, str], named: str
) -> None:
    config_file = tmp_path / "temporal.toml"
    if content is not None:
        config_file.write_text(content)
    with pytest.raises(ConfigurationError) as refused:
        load_settings(temporal_config_file=config_file, **values)
    message = str(refused.value)
    assert named in message
    assert "TEMPORAL_CONFIG_FILE" in message
    assert API_KEY not in message
