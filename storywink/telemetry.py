"""The worker's Temporal runtime: one Prometheus endpoint for the SDK's metrics and ours,
every series labelled with the worker identity, and the SDK core's logs in our logging."""

from __future__ import annotations

import logging

from temporalio.runtime import (
    LogForwardingConfig,
    LoggingConfig,
    PrometheusConfig,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)

from storywink.config import ConfigurationError, Settings
from storywink.illustration import metrics


def worker_runtime(settings: Settings, identity: str) -> Runtime:
    """A runtime for the worker's client; it serves /metrics on METRICS_PORT when set."""
    prometheus = None
    if settings.metrics_port is not None:
        prometheus = PrometheusConfig(
            bind_address=f"{settings.ops_host}:{settings.metrics_port}",
            histogram_bucket_overrides=metrics.BUCKETS,
        )
    telemetry = TelemetryConfig(
        # Core's own warnings go through Python logging, so they are JSON with LOG_FORMAT=json.
        logging=LoggingConfig(
            filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
            forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")),
        ),
        metrics=prometheus,
        global_tags={"worker_identity": identity},
    )
    try:
        return Runtime(telemetry=telemetry)
    except ValueError as exc:  # the exporter could not bind its port
        raise ConfigurationError(
            f"METRICS_PORT {settings.metrics_port} on {settings.ops_host}: {exc}"
        ) from None
