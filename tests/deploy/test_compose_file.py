"""Static checks of docker-compose.temporal.yml (no Docker needed).

Compose interpolation is emulated: `$$` is a literal `$`, and `${VAR:-default}` /
`${VAR-default}` resolve to their defaults (the environment is deliberately ignored so the
checks are deterministic).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import uuid
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client

from storywink import contract
from tests.support.paths import ROOT, WORKER_SCRIPT
from tests.support.services import required_tool, tool_path

COMPOSE_FILE = ROOT / "docker-compose.temporal.yml"
DOCS_FILE = ROOT / "docs" / "temporal-server.md"

FRONTEND_PORT = 7233
UI_PORT = 8080
VALID_CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
LONG_RUNNING_RESTARTS = {"always", "unless-stopped"}

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?err}, ${NAME?err}, ${NAME:+alt} ...
_BRACED = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?+])?(?P<arg>[^}]*)\}")
_UNBRACED = re.compile(r"\$(?P<name>[A-Za-z_][A-Za-z0-9_]*)")
_ESCAPED_DOLLAR = "\x00"


# --------------------------------------------------------------------------- helpers


def _interpolate(text: str) -> str:
    def braced(match: re.Match[str]) -> str:
        op = match.group("op")
        if op in {":-", "-"}:
            return match.group("arg")
        raise AssertionError(f"{match.group(0)!r} has no default value")

    out = text.replace("$$", _ESCAPED_DOLLAR)
    out = _BRACED.sub(braced, out)
    assert not _UNBRACED.search(out), f"unbraced interpolation (missing `$$`?) in {text!r}"
    return out.replace(_ESCAPED_DOLLAR, "$")


def _resolve(node: Any) -> Any:
    if isinstance(node, str):
        return _interpolate(node)
    if isinstance(node, list):
        return [_resolve(item) for item in node]
    if isinstance(node, dict):
        return {key: _resolve(value) for key, value in node.items()}
    return node


def _strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [s for item in node for s in _strings(item)]
    if isinstance(node, dict):
        return [s for key, value in node.items() for s in (*_strings(key), *_strings(value))]
    return []


def _image_repo_and_tag(image: str) -> tuple[str, str | None]:
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        repo, tag = name.rsplit(":", 1)
        return repo, tag
    return name, None


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) for item in env)
        return {pair[0]: (pair[1] if len(pair) > 1 else "") for pair in pairs}
    return {key: "" if value is None else str(value) for key, value in env.items()}


def _depends_on(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def _published_container_ports(service: dict[str, Any]) -> set[int]:
    ports: set[int] = set()
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            if entry.get("published") is not None:
                ports.add(int(entry["target"]))
            continue
        spec = str(entry).split("/", 1)[0]
        parts = spec.rsplit(":", 2)
        if len(parts) >= 2 and parts[-2]:  # "HOST:CONTAINER" or "IP:HOST:CONTAINER"
            ports.add(int(parts[-1]))
    return ports


def _bind_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    mounts: list[tuple[str, str]] = []
    for entry in service.get("volumes") or []:
        if isinstance(entry, dict):
            if entry.get("type") == "bind":
                mounts.append((str(entry["source"]), str(entry["target"])))
            continue
        parts = str(entry).split(":")
        if len(parts) >= 2 and parts[0].startswith((".", "/", "~")):
            mounts.append((parts[0], parts[1]))
    return mounts


def _named_volumes(service: dict[str, Any]) -> list[str]:
    names: list[str] = []
    for entry in service.get("volumes") or []:
        if isinstance(entry, dict):
            if entry.get("type") == "volume" and entry.get("source"):
                names.append(str(entry["source"]))
            continue
        parts = str(entry).split(":")
        if len(parts) >= 2 and not parts[0].startswith((".", "/", "~")):
            names.append(parts[0])
    return names


def _script(service: dict[str, Any]) -> str:
    return "\n".join(_strings(service.get("entrypoint")) + _strings(service.get("command")))


def _services_with_image(services: dict[str, Any], repo: str) -> list[str]:
    return [
        name
        for name, svc in services.items()
        if _image_repo_and_tag(str(svc.get("image", "")))[0] == repo
    ]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def raw_text() -> str:
    assert COMPOSE_FILE.is_file(), f"{COMPOSE_FILE} is missing"
    return COMPOSE_FILE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def raw(raw_text: str) -> dict[str, Any]:
    data = yaml.safe_load(raw_text)
    assert isinstance(data, dict), "compose file must be a YAML mapping"
    return data


@pytest.fixture(scope="module")
def compose(raw: dict[str, Any]) -> dict[str, Any]:
    resolved = _resolve(raw)
    assert isinstance(resolved, dict)
    return resolved


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    svcs = compose.get("services")
    assert isinstance(svcs, dict) and svcs, "no services defined"
    for name, svc in svcs.items():
        assert isinstance(svc, dict), f"service {name!r} is not a mapping"
        assert svc.get("image"), f"service {name!r} has no image"
    return svcs


@pytest.fixture(scope="module")
def server_name(services: dict[str, dict[str, Any]]) -> str:
    names = _services_with_image(services, "temporalio/server")
    assert len(names) == 1, f"expected exactly one temporalio/server service, got {names}"
    return names[0]


@pytest.fixture(scope="module")
def postgres_name(services: dict[str, dict[str, Any]]) -> str:
    names = _services_with_image(services, "postgres")
    assert len(names) == 1, f"expected exactly one postgres service, got {names}"
    return names[0]


@pytest.fixture(scope="module")
def setup_name(services: dict[str, dict[str, Any]]) -> str:
    names = [
        name
        for name in _services_with_image(services, "temporalio/admin-tools")
        if "temporal-sql-tool" in _script(services[name])
    ]
    assert len(names) == 1, f"expected one admin-tools schema set-up service, got {names}"
    return names[0]


@pytest.fixture(scope="module")
def namespace_name(services: dict[str, dict[str, Any]]) -> str:
    names = [
        name
        for name in _services_with_image(services, "temporalio/admin-tools")
        if "operator namespace create" in _script(services[name])
    ]
    assert len(names) == 1, f"expected one namespace-creation service, got {names}"
    return names[0]


@pytest.fixture(scope="module")
def ui_name(services: dict[str, dict[str, Any]]) -> str:
    names = _services_with_image(services, "temporalio/ui")
    assert len(names) == 1, f"expected exactly one temporalio/ui service, got {names}"
    return names[0]


# --------------------------------------------------------------------------- structure


def test_parses_as_yaml_with_services(raw: dict[str, Any]) -> None:
    assert isinstance(raw.get("services"), dict) and raw["services"]
    assert "version" not in raw, "the top-level `version` key is obsolete in Compose v2"


def test_depends_on_names_existing_services_with_valid_conditions(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, svc in services.items():
        for dep, condition in _depends_on(svc).items():
            assert dep in services, f"{name} depends on unknown service {dep!r}"
            assert dep != name, f"{name} depends on itself"
            assert condition in VALID_CONDITIONS, f"{name} -> {dep}: bad condition {condition!r}"
            target = services[dep]
            if condition == "service_healthy":
                assert target.get("healthcheck"), f"{name} waits for {dep} healthy: no healthcheck"
            if condition == "service_completed_successfully":
                assert target.get("restart", "no") not in LONG_RUNNING_RESTARTS, (
                    f"{name} waits for {dep} to exit, but {dep} is restarted forever"
                )


def test_depends_on_graph_has_no_cycles(services: dict[str, dict[str, Any]]) -> None:
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"dependency cycle: {' -> '.join((*path, name))}"
        if name in done:
            return
        for dep in _depends_on(services[name]):
            visit(dep, (*path, name))
        done.add(name)

    for name in services:
        visit(name, ())


def test_server_waits_for_schema_setup_and_healthy_postgres(
    services: dict[str, dict[str, Any]], server_name: str, setup_name: str, postgres_name: str
) -> None:
    deps = _depends_on(services[server_name])
    assert deps.get(setup_name) == "service_completed_successfully"
    assert deps.get(postgres_name) == "service_healthy"
    assert _depends_on(services[setup_name]).get(postgres_name) == "service_healthy"


def test_namespace_job_and_ui_wait_for_healthy_server(
    services: dict[str, dict[str, Any]], server_name: str, namespace_name: str, ui_name: str
) -> None:
    assert _depends_on(services[namespace_name]).get(server_name) == "service_healthy"
    assert _depends_on(services[ui_name]).get(server_name) == "service_healthy"


def test_long_running_services_have_healthchecks(
    services: dict[str, dict[str, Any]], server_name: str, postgres_name: str
) -> None:
    for name in (server_name, postgres_name):
        test = (services[name].get("healthcheck") or {}).get("test")
        assert test and test != ["NONE"], f"{name} needs a healthcheck"
    assert str(FRONTEND_PORT) in _strings(services[server_name]["healthcheck"]["test"])


# --------------------------------------------------------------------------- images


def test_deprecated_images_are_not_used(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        repo, _ = _image_repo_and_tag(svc["image"])
        assert repo != "temporalio/auto-setup", f"{name} uses deprecated temporalio/auto-setup"
        assert repo != "temporalio/web", f"{name} uses the retired temporalio/web UI"


def test_every_image_is_pinned(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        image = svc["image"]
        _, tag = _image_repo_and_tag(image)
        if "@sha256:" in image:
            continue
        assert tag, f"{name}: image {image!r} has no tag"
        assert tag.lower() != "latest", f"{name}: image {image!r} uses :latest"
        assert re.match(r"^v?\d+(\.\d+)*([.-][0-9A-Za-z.-]+)?$", tag), (
            f"{name}: tag {tag!r} is not an explicit version"
        )


def test_temporal_image_versions(services: dict[str, dict[str, Any]]) -> None:
    def tags(repo: str) -> set[str]:
        return {
            _image_repo_and_tag(svc["image"])[1] or ""
            for svc in services.values()
            if _image_repo_and_tag(svc["image"])[0] == repo
        }

    server = tags("temporalio/server")
    admin = tags("temporalio/admin-tools")
    assert len(server) == 1 and server == admin, (
        f"admin-tools {admin} must match server {server}: it carries the server's schema"
    )
    major, minor = (int(p) for p in next(iter(server)).split(".")[:2])
    assert (major, minor) >= (1, 28), f"server {server} is older than 1.28"
    (ui,) = tags("temporalio/ui")
    ui_major, ui_minor = (int(p) for p in ui.split(".")[:2])
    assert (ui_major, ui_minor) >= (2, 30), f"UI {ui} is older than 2.30"


# --------------------------------------------------------------------------- wiring


def test_server_persistence_settings(
    services: dict[str, dict[str, Any]], server_name: str, postgres_name: str
) -> None:
    env = _env(services[server_name])
    assert env.get("DB") in {"postgres12", "postgres12_pgx"}
    assert env.get("POSTGRES_SEEDS") == postgres_name, "POSTGRES_SEEDS must name the DB service"
    assert env.get("POSTGRES_USER") and env.get("POSTGRES_PWD")
    assert env.get("BIND_ON_IP") == "0.0.0.0", "other containers could not reach the frontend"


def test_credentials_are_consistent_and_not_hard_coded(
    raw: dict[str, Any], server_name: str, setup_name: str, postgres_name: str
) -> None:
    svcs = raw["services"]
    password = _env(svcs[postgres_name]).get("POSTGRES_PASSWORD", "")
    user = _env(svcs[postgres_name]).get("POSTGRES_USER", "")
    assert _BRACED.fullmatch(password), "PostgreSQL password must come from ${VAR:-default}"
    assert _env(svcs[server_name]).get("POSTGRES_PWD") == password
    assert _env(svcs[setup_name]).get("SQL_PASSWORD") == password
    assert _env(svcs[server_name]).get("POSTGRES_USER") == user
    assert _env(svcs[setup_name]).get("POSTGRES_USER") == user


def test_schema_setup_creates_and_updates_both_databases(
    services: dict[str, dict[str, Any]], server_name: str, setup_name: str, postgres_name: str
) -> None:
    svc = services[setup_name]
    env = _env(svc)
    server_env = _env(services[server_name])
    assert env.get("POSTGRES_SEEDS") == postgres_name
    assert env.get("DBNAME") == server_env.get("DBNAME", "temporal") == "temporal"
    assert (
        env.get("VISIBILITY_DBNAME")
        == server_env.get("VISIBILITY_DBNAME", "temporal_visibility")
        == "temporal_visibility"
    )
    script = _script(svc)
    assert "--plugin postgres12" in script
    for step in ("create", "setup-schema -v 0.0", "update-schema -d"):
        assert script.count(f" {step}") >= 2, f"{step!r} must run for both databases"
    assert "/etc/temporal/schema/postgresql/v12" in script
    assert "/temporal/versioned" in script
    assert "/visibility/versioned" in script
    assert script.index("set -eu") < script.index("temporal-sql-tool"), "errors must fail"


def test_inline_scripts_are_single_shell_arguments(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        entrypoint = svc.get("entrypoint")
        if isinstance(entrypoint, list) and entrypoint[-1:] == ["-c"]:
            command = svc.get("command")
            assert isinstance(command, list) and len(command) == 1, (
                f"{name}: a string command would be split into words; use a 1-item list"
            )


def test_namespace_creation_is_idempotent(
    services: dict[str, dict[str, Any]], server_name: str, namespace_name: str
) -> None:
    svc = services[namespace_name]
    script = _script(svc)
    assert "operator namespace describe" in script, "must check for an existing namespace"
    assert script.index("namespace describe") < script.index("namespace create")
    assert _env(svc).get("TEMPORAL_ADDRESS") == f"{server_name}:{FRONTEND_PORT}"
    assert _env(svc).get("NAMESPACE") == "default"
    assert svc.get("restart", "no") not in LONG_RUNNING_RESTARTS


def test_ui_points_at_server(
    services: dict[str, dict[str, Any]], server_name: str, ui_name: str
) -> None:
    assert _env(services[ui_name]).get("TEMPORAL_ADDRESS") == f"{server_name}:{FRONTEND_PORT}"


def test_frontend_and_ui_ports_are_published(
    services: dict[str, dict[str, Any]], server_name: str, ui_name: str
) -> None:
    assert FRONTEND_PORT in _published_container_ports(services[server_name])
    assert UI_PORT in _published_container_ports(services[ui_name])


def test_postgres_data_is_on_a_declared_named_volume(
    compose: dict[str, Any], services: dict[str, dict[str, Any]], postgres_name: str
) -> None:
    declared = set((compose.get("volumes") or {}).keys())
    data_mounts = [
        entry
        for entry in services[postgres_name].get("volumes") or []
        if str(entry).split(":")[1:2] == ["/var/lib/postgresql/data"]
    ]
    assert data_mounts, "PostgreSQL data directory is not on a volume"
    assert str(data_mounts[0]).split(":")[0] in declared
    for name, svc in services.items():
        for volume in _named_volumes(svc):
            assert volume in declared, f"{name} uses undeclared volume {volume!r}"


def test_networks_are_declared(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    declared = set((compose.get("networks") or {}).keys())
    for name, svc in services.items():
        nets = svc.get("networks") or []
        for net in nets if isinstance(nets, list) else nets.keys():
            assert net in declared, f"{name} uses undeclared network {net!r}"


def test_mounted_repo_files_exist(services: dict[str, dict[str, Any]]) -> None:
    found = 0
    for name, svc in services.items():
        for source, _target in _bind_mounts(svc):
            assert not source.startswith(("/", "~")), f"{name}: host-specific mount {source!r}"
            path = (COMPOSE_FILE.parent / source).resolve()
            assert path.exists(), f"{name} mounts {source!r}, which does not exist"
            assert path.is_relative_to(ROOT), f"{name} mounts {source!r} outside the repo"
            found += 1
    assert found, "expected at least the dynamic config mount"


def test_dynamic_config_file_is_mounted_and_valid(
    services: dict[str, dict[str, Any]], server_name: str
) -> None:
    svc = services[server_name]
    config_path = _env(svc).get("DYNAMIC_CONFIG_FILE_PATH")
    assert config_path, "server has no DYNAMIC_CONFIG_FILE_PATH"
    in_container = PurePosixPath("/etc/temporal") / config_path  # relative to the workdir
    for source, target in _bind_mounts(svc):
        target_path = PurePosixPath(target)
        if in_container.is_relative_to(target_path):
            host_file = COMPOSE_FILE.parent / source / in_container.relative_to(target_path)
            break
    else:
        pytest.fail(f"{in_container} is not inside any mount of {server_name}")
    assert host_file.is_file(), f"{host_file} does not exist"
    data = yaml.safe_load(host_file.read_text(encoding="utf-8"))
    assert isinstance(data, dict) and data, "dynamic config must be a non-empty mapping"
    for key, values in data.items():
        assert isinstance(values, list) and values, f"{key}: must be a list of values"
        for value in values:
            assert isinstance(value, dict) and "value" in value, f"{key}: entry needs `value`"
            assert set(value) <= {"value", "constraints"}, f"{key}: unknown fields {value}"


# --------------------------------------------------------------------------- variables


def test_every_variable_has_a_default_and_is_documented(raw_text: str) -> None:
    body = "\n".join(
        line for line in raw_text.splitlines() if not line.lstrip().startswith("#")
    ).replace("$$", "")
    names: set[str] = set()
    for match in _BRACED.finditer(body):
        assert match.group("op") in {":-", "-"}, f"{match.group(0)} has no default"
        names.add(match.group("name"))
    leftovers = _UNBRACED.findall(_BRACED.sub("", body))
    assert not leftovers, f"unbraced interpolation (escape shell vars as $$): {leftovers}"
    assert "TEMPORAL_POSTGRES_PASSWORD" in names
    docs = DOCS_FILE.read_text(encoding="utf-8")
    undocumented = sorted(name for name in names if f"`{name}`" not in docs)
    assert not undocumented, f"not documented in {DOCS_FILE.name}: {undocumented}"


def test_interpolation_helper_rejects_broken_values() -> None:
    assert _interpolate("${A:-x}:${B-y}:$$HOME") == "x:y:$HOME"
    with pytest.raises(AssertionError):
        _interpolate("${PASSWORD}")
    with pytest.raises(AssertionError):
        _interpolate("echo $HOME")


# --------------------------------------------------------------------------- search attributes


def test_the_namespace_job_registers_the_search_attributes_the_workflow_upserts(
    services: dict[str, dict[str, Any]], namespace_name: str
) -> None:
    declared = _env(services[namespace_name])["SEARCH_ATTRIBUTES"].split()
    assert declared == [key.name for key in contract.SEARCH_ATTRIBUTES]


@pytest.mark.process
async def test_the_namespace_job_script_creates_namespace_and_search_attributes_idempotently(
    services: dict[str, dict[str, Any]], namespace_name: str, temporal_client: Client
) -> None:
    """The job's own shell script, run here against a real server with the real CLI."""
    service = services[namespace_name]
    namespace = f"compose-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        **_env(service),
        "TEMPORAL_ADDRESS": temporal_client.service_client.config.target_host,
        "NAMESPACE": namespace,
        "PATH": f"{Path(tool_path('temporal')).parent}{os.pathsep}{os.environ['PATH']}",
    }
    for _ in range(2):  # the second run finds everything in place
        job = await asyncio.to_thread(
            subprocess.run,
            ["/bin/sh", "-c", _strings(service["command"])[0]],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert job.returncode == 0, job.stdout + job.stderr
    assert "Search attribute BookId already exists" in job.stdout
    listed = await temporal_client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    assert {key.name for key in contract.SEARCH_ATTRIBUTES} <= set(listed.custom_attributes)


# --------------------------------------------------------------------------- the Storywink stack

DOCKERFILE = ROOT / "Dockerfile"
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
WORKER = "storywink-worker"
MIGRATE = "storywink-migrate"
PROMETHEUS = "prometheus"


def _seconds(duration: str) -> float:
    """A Compose duration such as `45s`, `1m30s` or `1h`."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"bad duration {duration!r}"
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6}
    return sum(float(number) * scale[unit] for number, unit in parts)


def _promtool() -> str:
    return required_tool("promtool")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)


def test_worker_is_built_from_the_dockerfile_tagged_with_the_package_version(
    services: dict[str, dict[str, Any]],
) -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for name in (WORKER, MIGRATE):
        svc = services[name]
        context = svc.get("build")
        context = context.get("context", ".") if isinstance(context, dict) else context
        assert context and (COMPOSE_FILE.parent / context / "Dockerfile").resolve() == DOCKERFILE
        assert _image_repo_and_tag(svc["image"]) == ("storywink-worker", version)


def test_worker_runs_replicas_on_the_temporal_network_after_namespace_and_migration(
    services: dict[str, dict[str, Any]], server_name: str, namespace_name: str
) -> None:
    worker = services[WORKER]
    assert worker["deploy"]["replicas"] >= 2
    assert "container_name" not in worker, "a fixed container name allows one replica only"
    assert not _published_container_ports(worker), "replicas cannot share a host port"
    deps = _depends_on(worker)
    assert deps.get(namespace_name) == "service_completed_successfully"
    assert deps.get(MIGRATE) == "service_completed_successfully"
    assert deps.get(server_name) == "service_healthy"
    env = _env(worker)
    assert env["TEMPORAL_ADDRESS"] == f"{server_name}:{FRONTEND_PORT}"
    assert env["TEMPORAL_NAMESPACE"] == _env(services[namespace_name])["NAMESPACE"]
    assert env["OPS_HOST"] == "0.0.0.0", "other containers could not reach its endpoints"
    assert env["DATABASE_URL"] == _env(services[MIGRATE])["DATABASE_URL"]
    assert env["DATABASE_URL"].startswith("postgresql+psycopg://"), "replicas share one DB"
    assert worker.get("restart") in LONG_RUNNING_RESTARTS
    assert [e if isinstance(e, str) else e["path"] for e in worker["env_file"]] == [".env"]
    assert all(isinstance(e, dict) and e.get("required") is False for e in worker["env_file"])


def test_worker_stop_grace_outlasts_its_shutdown_grace(services: dict[str, dict[str, Any]]) -> None:
    worker = services[WORKER]
    shutdown_grace = float(_env(worker)["SHUTDOWN_GRACE_SECONDS"])
    stop_grace = _seconds(str(worker["stop_grace_period"]))
    # Margin for the worker to finish its last completions and close its connections.
    assert stop_grace >= shutdown_grace + 10, (stop_grace, shutdown_grace)
    assert worker.get("stop_signal", "SIGTERM") == "SIGTERM"


def test_worker_healthcheck_asks_readyz_on_its_health_port(
    services: dict[str, dict[str, Any]],
) -> None:
    worker = services[WORKER]
    health_port = _env(worker)["HEALTH_PORT"]
    test = worker["healthcheck"]["test"]
    assert test[0] == "CMD" and test[1] == "python", "no curl in python:3.11-slim"
    assert f"http://127.0.0.1:{health_port}/readyz" in " ".join(test)
    assert health_port != _env(worker)["METRICS_PORT"]


@pytest.mark.process
def test_worker_healthcheck_command_follows_readyz(tmp_path: Path) -> None:
    """The healthcheck's own Python command against a server answering 200, then 503."""
    import http.server
    import threading

    status = [200]

    class Ready(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status[0] if self.path == "/readyz" else 404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Ready)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        compose = _resolve(yaml.safe_load(COMPOSE_FILE.read_text()))
        worker = compose["services"][WORKER]
        port = _env(worker)["HEALTH_PORT"]
        code = worker["healthcheck"]["test"][-1].replace(
            f":{port}/", f":{server.server_address[1]}/"
        )
        assert _run(sys.executable, "-c", code).returncode == 0
        status[0] = 503
        assert _run(sys.executable, "-c", code).returncode != 0
    finally:
        server.shutdown()


@pytest.mark.process
def test_migration_job_script_creates_and_migrates_the_database_idempotently(
    services: dict[str, dict[str, Any]],
) -> None:
    """The job's own shell script, run here against the test PostgreSQL server."""
    import psycopg

    from tests.support.services import PG_ADMIN_URL, postgres_admin

    admin = postgres_admin()
    name = f"storywink_compose_{uuid.uuid4().hex[:8]}"
    url = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    env = {
        **os.environ,
        "DATABASE_URL": f"{url}/{name}",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    script = _strings(services[MIGRATE]["command"])[0]
    try:
        outputs = []
        for _ in range(2):
            job = subprocess.run(
                ["/bin/sh", "-c", script], env=env, capture_output=True, text=True, timeout=120
            )
            assert job.returncode == 0, job.stdout + job.stderr
            outputs.append(job.stdout)
        assert f"Database {name} created" in outputs[0]
        assert f"Database {name} already exists" in outputs[1]
        with psycopg.connect(f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}") as conn:
            assert conn.execute("SELECT version_num FROM alembic_version").fetchone()
    finally:
        with admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_prometheus_mounts_its_config_and_rules_and_publishes_its_port(
    services: dict[str, dict[str, Any]],
) -> None:
    svc = services[PROMETHEUS]
    command = _strings(svc["command"])
    flags = dict(arg.split("=", 1) for arg in command if "=" in arg)
    config = PurePosixPath(flags["--config.file"])
    for source, target in _bind_mounts(svc):
        if config.is_relative_to(target):
            host_dir = (COMPOSE_FILE.parent / source).resolve()
            host_config = host_dir / config.relative_to(target)
            break
    else:
        pytest.fail(f"{config} is not inside any mount of {PROMETHEUS}")
    assert host_config == PROMETHEUS_DIR / "prometheus.yml"
    loaded = yaml.safe_load(host_config.read_text())
    rule_files = [host_config.parent / rule for rule in loaded["rule_files"]]
    assert rule_files and all(path.is_relative_to(host_dir) for path in rule_files)
    assert PROMETHEUS_DIR / "alerts.yml" in rule_files
    assert 9090 in _published_container_ports(svc)
    assert flags["--storage.tsdb.path"] in {t for _, t in _named_mounts(svc)}


def _named_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (parts[0], parts[1])
        for parts in (str(entry).split(":") for entry in service.get("volumes") or [])
        if len(parts) >= 2 and not parts[0].startswith((".", "/", "~"))
    ]


def test_prometheus_discovers_every_worker_replica_on_its_metrics_port(
    services: dict[str, dict[str, Any]],
) -> None:
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == WORKER]
    (sd,) = job["dns_sd_configs"]
    assert sd["names"] == [WORKER], "Compose's DNS answers the service name"
    assert sd["type"] == "A", "one A record per replica"
    assert str(sd["port"]) == _env(services[WORKER])["METRICS_PORT"]
    assert set(services[PROMETHEUS]["networks"]) & set(services[WORKER]["networks"])


def test_worker_count_alert_expects_the_compose_replicas(
    services: dict[str, dict[str, Any]],
) -> None:
    rules = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
    by_name = {r["alert"]: r for group in rules["groups"] for r in group["rules"]}
    expr = " ".join(by_name["StorywinkWorkersMissing"]["expr"].split())
    assert expr == f'count(up{{job="{WORKER}"}} == 1) < {services[WORKER]["deploy"]["replicas"]}'


@pytest.mark.process
def test_prometheus_config_passes_promtool() -> None:
    checked = _run(_promtool(), "check", "config", str(PROMETHEUS_DIR / "prometheus.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "alerts.yml" in checked.stdout, "the rule file was not checked with the config"


@pytest.mark.process
def test_alert_rules_pass_promtool_check_and_their_unit_tests() -> None:
    promtool = _promtool()
    checked = _run(promtool, "check", "rules", str(PROMETHEUS_DIR / "alerts.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = _run(promtool, "test", "rules", str(PROMETHEUS_DIR / "alerts.test.yml"))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    # Every alert is exercised by the unit tests.
    rules = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
    alerts = {r["alert"] for group in rules["groups"] for r in group["rules"]}
    tests = yaml.safe_load((PROMETHEUS_DIR / "alerts.test.yml").read_text())["tests"]
    fired = {
        case["alertname"] for t in tests for case in t["alert_rule_test"] if case["exp_alerts"]
    }
    silent = {
        case["alertname"] for t in tests for case in t["alert_rule_test"] if not case["exp_alerts"]
    }
    assert alerts == fired == silent, (alerts, fired, silent)


@pytest.mark.process
def test_alert_unit_tests_catch_a_changed_threshold(tmp_path: Path) -> None:
    promtool = _promtool()
    for name in ("alerts.yml", "alerts.test.yml"):
        shutil.copy(PROMETHEUS_DIR / name, tmp_path / name)
    rules = tmp_path / "alerts.yml"
    rules.write_text(rules.read_text().replace("< 0.8", "< 0.5"))
    tested = _run(promtool, "test", "rules", str(tmp_path / "alerts.test.yml"))
    assert tested.returncode != 0
    assert "StorywinkPageCompletionRateLow" in tested.stdout + tested.stderr


def test_alert_rules_use_metrics_the_worker_exports() -> None:
    from storywink.illustration import metrics
    from storywink.worker import page_work, process

    ours = {
        metrics.PAGES,
        metrics.PAGE_DURATION,
        metrics.PAGE_RETRIES,
        process.SHUTDOWN_TIMESTAMP,
        page_work.PAUSED_METRIC,
    }
    text = (PROMETHEUS_DIR / "alerts.yml").read_text()
    rules = yaml.safe_load(text)
    exprs = " ".join(r["expr"] for group in rules["groups"] for r in group["rules"])
    used = set(re.findall(r"\b(storywink_[a-z_]+|temporal_[a-z_]+)\b", exprs))
    used = {re.sub(r"_bucket$", "", name) for name in used}
    assert ours <= used
    # Names read off a scraped worker (tests/deploy/test_prometheus.py checks them live).
    sdk = {
        "temporal_activity_schedule_to_start_latency",
        "temporal_request_failure",
        "temporal_long_request_failure",
    }
    assert used == ours | sdk


def test_dockerfile_copies_existing_sources_and_runs_the_worker_as_non_root() -> None:
    lines = [
        line.strip()
        for line in DOCKERFILE.read_text().replace("\\\n", " ").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    (base,) = [line.split()[1] for line in lines if line.startswith("FROM ")]
    assert base == "python:3.11-slim"
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    copies = [line.split()[1:] for line in lines if line.startswith("COPY ")]
    assert copies
    for *sources, _dest in copies:
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: not in the repo"
            assert source not in ignored, f"COPY {source}: excluded by .dockerignore"
    copied = {source for *sources, _ in copies for source in sources}
    for needed in ("pyproject.toml", "worker.py", "storywink", "workflows", "activities"):
        assert needed in copied, f"{needed} is not copied: `pip install .` needs it"
    readme = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["readme"]
    assert readme in copied, "pyproject's readme must be in the build context"
    assert any(line.startswith("RUN ") and "pip install ." in line for line in lines)
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in {"root", "0"}
    (cmd,) = [line for line in lines if line.startswith("CMD ")]
    assert json.loads(cmd[4:]) == ["python", "worker.py"], "exec form: SIGTERM reaches python"
    assert WORKER_SCRIPT.is_file()
    assert {".env", ".git", ".venv", "tests"} <= ignored, "secrets and bulk stay out"
