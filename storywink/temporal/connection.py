"""The Temporal client every process builds once, and the checks it passes at start."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Final

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.envconfig import ClientConfigProfile
from temporalio.runtime import Runtime
from temporalio.service import RPCError, RPCStatusCode

from storywink import contract
from storywink.config import Settings

__all__ = [
    "TemporalConnectionLost",
    "TemporalUnavailable",
    "connect_temporal",
    "ensure_search_attributes",
    "is_connection_lost",
]

# The start-up checks' calls to Temporal: a server that accepts the connection but does not
# answer them ends the start with a clear error instead of a worker stalled before polling.
STARTUP_CALL_TIMEOUT: Final = timedelta(seconds=30)


class TemporalUnavailable(RuntimeError):
    """Temporal is unreachable, the namespace does not exist, or the namespace lacks our
    search attributes; the message is one line naming the setting."""


class TemporalConnectionLost(RuntimeError):
    """Temporal stopped answering a client that was following a run, for longer than it
    waits (a restart it survives is shorter); the run itself goes on."""


# A lost connection (a server restart, a network blip), not a refusal by the server.
_CONNECTION_LOST: Final = frozenset({RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED})


def is_connection_lost(error: BaseException) -> bool:
    return isinstance(error, RPCError) and error.status in _CONNECTION_LOST


async def connect_temporal(settings: Settings, runtime: Runtime | None = None) -> Client:
    """The one place a Temporal client is built. Address and namespace from `settings`;
    API key, TLS and gRPC headers from the Temporal profile (`temporal.toml`, TEMPORAL_*),
    as the `temporal` CLI reads them. Sets the pydantic converter, and checks the server
    answers and has the namespace. Workers built on the client use its `runtime` (metrics,
    core logs); the default one when None. No message names the API key."""
    try:
        profile = settings.temporal_client_profile()
    except ValueError as exc:  # the file changed since the settings were read
        raise TemporalUnavailable(str(exc)) from None
    secrets = [profile.api_key] if profile.api_key else []
    where = f"{settings.temporal_address} ({settings.temporal_origin('address')})"
    try:
        config = profile.to_client_connect_config()  # reads the TLS files
        config["target_host"] = settings.temporal_address
        config["namespace"] = settings.temporal_namespace
        client = await Client.connect(
            **config, data_converter=contract.DATA_CONVERTER, runtime=runtime
        )
        await client.service_client.check_health()
    except Exception as exc:
        raise TemporalUnavailable(
            f"cannot reach Temporal at {where}{_security(profile)}: "
            f"{type(exc).__name__}: {_first_line(exc, secrets)}"
        ) from None
    await _check_namespace(client, settings, secrets)
    return client


def _security(profile: ClientConfigProfile) -> str:
    """What the connection used, named but never shown."""
    used = []
    tls_on = profile.tls.disabled is not True if profile.tls else bool(profile.api_key)
    if tls_on:
        used.append("TLS")
    if profile.api_key:
        used.append("API key")
    return f" with {' and '.join(used)}" if used else ""


async def _check_namespace(client: Client, settings: Settings, secrets: list[str]) -> None:
    namespace = f"{settings.temporal_namespace!r} ({settings.temporal_origin('namespace')})"
    try:
        await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=settings.temporal_namespace),
            timeout=STARTUP_CALL_TIMEOUT,
        )
    except RPCError as exc:
        if exc.status is RPCStatusCode.NOT_FOUND:
            raise TemporalUnavailable(
                f"namespace {namespace} does not exist at {settings.temporal_address}"
            ) from None
        raise TemporalUnavailable(
            f"cannot describe namespace {namespace} at {settings.temporal_address}: "
            f"{exc.status.name}: {_first_line(exc, secrets)}"
        ) from None


async def ensure_search_attributes(client: Client, namespace: str) -> list[str]:
    """Make sure the namespace knows our search attributes (a run upserts them; without
    them its workflow task would fail forever). Registers missing ones where the server
    allows it (dev and self-hosted servers); return the names it registered."""
    missing = await _missing_search_attributes(client, namespace)
    if not missing:
        return []
    try:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=namespace,
                search_attributes={key.name: _proto_type(key) for key in missing},
            ),
            timeout=STARTUP_CALL_TIMEOUT,
        )
    except RPCError as exc:
        refusal = f"{exc.status.name}: {_first_line(exc)}"
    else:
        refusal = "added, but not listed afterwards"
    # Another worker may have added them meanwhile (ALREADY_EXISTS); what counts is the list.
    still_missing = await _missing_search_attributes(client, namespace)
    if still_missing:
        commands = "; ".join(
            f"temporal operator search-attribute create --namespace {namespace} "
            f"--name {key.name} --type {key.indexed_value_type.name.title()}"
            for key in still_missing
        )
        raise TemporalUnavailable(
            f"namespace {namespace!r} (TEMPORAL_NAMESPACE) lacks the search attributes "
            f"{', '.join(key.name for key in still_missing)} and refused to add them "
            f"({refusal}); run: {commands}"
        )
    return [key.name for key in missing]


async def _missing_search_attributes(
    client: Client, namespace: str
) -> list[SearchAttributeKey[Any]]:
    try:
        listed = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=namespace),
            timeout=STARTUP_CALL_TIMEOUT,
        )
    except RPCError as exc:
        raise TemporalUnavailable(
            f"cannot list the search attributes of namespace {namespace!r} "
            f"(TEMPORAL_NAMESPACE): {exc.status.name}: {_first_line(exc)}"
        ) from None
    known = dict(listed.custom_attributes)
    missing: list[SearchAttributeKey[Any]] = []
    for key in contract.SEARCH_ATTRIBUTES:
        registered = known.get(key.name)
        if registered is None:
            missing.append(key)
        elif registered != _proto_type(key):
            raise TemporalUnavailable(
                f"search attribute {key.name} of namespace {namespace!r} (TEMPORAL_NAMESPACE) "
                f"is {IndexedValueType.Name(registered)}, expected "
                f"{IndexedValueType.Name(_proto_type(key))}"
            )
    return missing


def _proto_type(key: SearchAttributeKey[Any]) -> IndexedValueType.ValueType:
    return IndexedValueType.ValueType(key.indexed_value_type.value)


def _first_line(exc: BaseException, secrets: list[str] | None = None) -> str:
    lines = str(exc).strip().splitlines()
    line = lines[0] if lines else type(exc).__name__
    for secret in secrets or []:
        line = line.replace(secret, "**********")
    return line
