"""The page poller, paused while the fleet is faulted (README "A fleet-wide fault").

A key the API refuses, a model it no longer knows or CDN credentials it refuses fail every
page alike, so the page activity does not settle the page: it reports the fault
(`storywink.worker.fleet_health`) and asks Temporal to retry it later. This poller then stops
taking pages (the others wait in Temporal's queue, their attempts unused; `/readyz` says
`paused`; one log line; `storywink_page_work_paused` is 1), probes the provider every
`FLEET_FAULT_PROBE_SECONDS` without generating anything, and polls again once the probe
passes. After `FLEET_FAULT_MAX_HOURS` it polls again anyway: a page scheduled that long
ago fails with the fault as its reason (the activity's bound).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

from temporalio.common import MetricMeter
from temporalio.worker import Worker

from storywink.health import Readiness, State
from storywink.worker.fleet_health import ActiveFault, FleetHealth

log = logging.getLogger("storywink.worker")
PAUSED_METRIC = "storywink_page_work_paused"
Probe = Callable[[], Awaitable[bool]]


class PausablePageWorker:
    """Runs the page worker; shaped like a `Worker` for the process (`run`, `shutdown`,
    `is_running`). A Temporal worker cannot poll again once shut down, so each resume
    runs a new one from `rebuild`."""

    def __init__(
        self,
        first: Worker,
        rebuild: Callable[[], Worker],
        fleet: FleetHealth,
        probes: Mapping[str, Probe],
        default_probe: Probe,
        readiness: Readiness,
        meter: MetricMeter,
        *,
        probe_seconds: float,
        max_pause_seconds: float,
    ) -> None:
        self._worker = first
        self._rebuild = rebuild
        self._fleet = fleet
        self._probes = probes
        self._default_probe = default_probe
        self._readiness = readiness
        self._paused = meter.create_gauge(PAUSED_METRIC, "1 while page work is paused.")
        self._probe_seconds = probe_seconds
        self._max_pause_seconds = max_pause_seconds
        self._stop = asyncio.Event()

    @property
    def is_running(self) -> bool:
        return self._worker.is_running

    async def run(self) -> None:
        while not self._stop.is_set():
            running = asyncio.create_task(self._worker.run())
            faulted = asyncio.create_task(self._fleet.wait_faulted())
            stopped = asyncio.create_task(self._stop.wait())
            await asyncio.wait([running, faulted, stopped], return_when=asyncio.FIRST_COMPLETED)
            faulted.cancel()
            stopped.cancel()
            if running.done() or self._stop.is_set():
                await running  # stopped from outside, or failed: raise its error
                return
            fault = self._fleet.fault
            assert fault is not None
            await self._pause(fault)
            await self._worker.shutdown()
            await running
            if not await self._until_cleared(fault):
                return
            self._resume(fault)
            self._worker = self._rebuild()

    async def shutdown(self) -> None:
        self._stop.set()
        if self._worker.is_running:
            await self._worker.shutdown()

    async def _pause(self, fault: ActiveFault) -> None:
        if self._readiness.state is State.READY:
            self._readiness.state = State.PAUSED
        self._paused.set(1, {"setting": fault.setting})
        log.error(
            "page work paused: %s refused (%s); pages wait in Temporal's queue; probing "
            "every %.0fs, taking pages again once it works",
            fault.setting,
            fault.reason,
            self._probe_seconds,
        )

    def _resume(self, fault: ActiveFault) -> None:
        self._fleet.clear()
        self._paused.set(0, {"setting": fault.setting})
        if self._readiness.state is State.PAUSED:
            self._readiness.state = State.READY
        log.info("page work resumed: %s works again", fault.setting)

    async def _until_cleared(self, fault: ActiveFault) -> bool:
        """True once the probe passes (or the pause lasted its maximum); False if stopped."""
        probe = self._probes.get(fault.setting, self._default_probe)
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self._probe_seconds)
            if self._stop.is_set():
                return False
            if time.monotonic() - fault.since >= self._max_pause_seconds:
                log.error(
                    "%s still refused after %.1f h: taking pages again; those scheduled "
                    "that long ago fail with it",
                    fault.setting,
                    self._max_pause_seconds / 3600,
                )
                return True
            try:
                if await probe():
                    return True
            except Exception as exc:  # a probe that breaks is a probe that failed
                log.debug("probe of %s failed: %s", fault.setting, type(exc).__name__)
