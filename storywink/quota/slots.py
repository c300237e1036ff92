"""The image model's quota, shared by every worker: the arithmetic of one limiter.

A limiter is one row (`QuotaState`): the rate and the next free slot. A model call reserves
the next slot (the row's `next_free` moves on by one interval), waits for it, and reports a
429. Slots are spaced evenly from the first call on, so there is no full bucket to burst at
start-up; the rate stays a little (`HEADROOM`) under the configured limit, so jitter between
the slot and the call reaching the model never puts one call too many in the provider's window.

Adaptive: a 429 lowers the rate for the whole fleet and moves the next free slot past the
provider's `RetryInfo` delay; slots reserved before it are void and reserved again (`epoch`).
A 429 to a call reserved before the last decrease is the same overrun and changes nothing;
one whose RetryInfo delay is shorter than a slot is a call that came early (jitter), and
only shifts the schedule.
The rate at which a 429 came is remembered (`overrun`): after `HOLD_SECONDS` without one the
rate climbs back quickly to just under it, then probes above it slowly at first, faster the
longer no 429 comes (so a quota that came back is found within a minute or so). A 429 to
such a probe above the held rate goes back to `NEAR_DECREASE` x the probe but never below
the held rate (the quota lies between), and holds `PROBE_HOLD_SECONDS`. Otherwise a 429
near the remembered overrun (the quota is still there) lowers the rate by `NEAR_DECREASE`;
one well under it (the quota fell) by `FAR_DECREASE`. The pause after a 429 ends
RetryInfo's delay after the refused call's slot (the answer may come a latency later).

Pure functions of (state, now): `storywink.quota.limiter` keeps the row in the database and
applies them atomically; the unit tests run them against a simulated provider.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final

HEADROOM: Final = 0.01  # slots at 99 % of the rate
FAR_DECREASE: Final = 0.5  # rate x this on a 429 well under the last overrun (or the first)
NEAR_DECREASE: Final = 0.9  # ... on a 429 near it
NEAR: Final = 0.85  # "near": at least this x the last overrun
FLOOR: Final = 0.05  # never below 5 % of the limit
HOLD_SECONDS: Final = 10.0  # no climbing this long after a 429
PROBE_HOLD_SECONDS: Final = 15.0  # ... after a 429 to a probe above the held rate
CLIMB_SECONDS: Final = 20.0  # the quick climb: the whole limit in this long
PROBE_SECONDS: Final = 40.0  # the probe above the overrun: + limit x (t / this)^2
EARLY_TOLERANCE_SECONDS: Final = 30.0  # at most one "came early" 429 this often
MIN_PAUSE_SECONDS: Final = 0.5  # a 429 without RetryInfo pauses the fleet this long
RETRY_MARGIN_SECONDS: Final = 0.2  # resume this long after the RetryInfo delay ends


@dataclass(frozen=True)
class QuotaState:
    """The shared row. Times are seconds since the epoch (wall clock: workers on several
    hosts compare them, so their clocks must agree, as NTP keeps them, to well under a
    slot). Rates are per minute; `rate` is the one set at the last 429 (`None`: never)."""

    rate: float | None = None
    overrun: float | None = None  # the rate at which the last 429 came
    next_free: float = 0.0
    hold_until: float = 0.0  # the rate climbs from then on
    epoch: int = 0  # bumped on every decrease: slots reserved before are void
    far: bool = True  # the last 429 came well under the overrun before it
    early_at: float = 0.0  # the last 429 taken for a call that came early


@dataclass(frozen=True)
class Slot:
    at: float  # when the call may start
    epoch: int


def current_rate(state: QuotaState, limit: float, now: float) -> float:
    """The rate at `now`, climbing back after a 429 (see the module's doc)."""
    if state.rate is None:
        return limit
    base = min(state.rate, limit)
    since = now - state.hold_until
    if since <= 0:
        return base
    overrun = state.overrun or limit
    # Quickly back to the last overrun when the 429 came near the one before (the quota
    # held), else half-way to it: the quota fell, to somewhere in between.
    plateau = base if state.far else max(base, NEAR * overrun)
    quick = base + limit * since / CLIMB_SECONDS
    if quick <= plateau:
        return min(limit, quick)
    probing = since - (plateau - base) / limit * CLIMB_SECONDS
    return min(limit, plateau + limit * (probing / PROBE_SECONDS) ** 2)


def interval(rate: float) -> float:
    """Seconds between two slots at `rate` per minute, headroom included."""
    return 60.0 / (rate * (1 - HEADROOM))


def reserve(state: QuotaState, limit: float, now: float) -> tuple[QuotaState, Slot]:
    """Take the next free slot: now if the limiter is idle, else after the last one."""
    at = max(state.next_free, now)
    new = replace(state, next_free=at + interval(current_rate(state, limit, at)))
    return new, Slot(at=at, epoch=state.epoch)


def still_valid(state: QuotaState, slot: Slot) -> bool:
    """Whether a reserved slot survived the decreases since (else: reserve again)."""
    return slot.epoch == state.epoch


def rejected(
    state: QuotaState, limit: float, now: float, slot: Slot, retry_after: float | None
) -> QuotaState:
    """The model answered 429 to the call made in `slot`: slow the fleet down and pause it
    past the provider's delay, unless the rate was already lowered since that slot."""
    if slot.epoch != state.epoch:
        return state
    rate = current_rate(state, limit, slot.at)
    early = retry_after is not None and retry_after < interval(rate)
    if early and rate >= limit and now - state.early_at > EARLY_TOLERANCE_SECONDS:
        # At the limit, the provider's window frees a call sooner than our next slot: this
        # call came a little early (jitter, a slow first request), the rate is right. Shift
        # the schedule past the delay and keep the rate (once in a while: more often, the
        # quota is below the limit).
        return replace(
            state, next_free=now + (retry_after or 0.0), epoch=state.epoch + 1, early_at=now
        )
    if state.rate is not None and rate > state.rate and slot.at > state.hold_until:
        # Climbing above the rate held since the last 429 without one: the quota lies
        # between the two. Back to (at most NEAR_DECREASE under) the probe, never below
        # the held rate, and probe slowly from there.
        lowered, near, hold = max(state.rate, rate * NEAR_DECREASE), False, PROBE_HOLD_SECONDS
    else:
        near = state.overrun is not None and rate >= NEAR * state.overrun
        lowered = max(limit * FLOOR, rate * (NEAR_DECREASE if near else FAR_DECREASE))
        hold = HOLD_SECONDS
    return QuotaState(
        rate=lowered,
        overrun=rate,
        next_free=_resume_at(now, slot, retry_after),
        hold_until=now + hold,
        epoch=state.epoch + 1,
        far=not near,
        early_at=state.early_at,
    )


def _resume_at(now: float, slot: Slot, retry_after: float | None) -> float:
    """When the fleet may call again after a 429. The RetryInfo delay counts from when the
    provider refused the call, about the slot's time (the answer may come a model latency
    later); without it, a short pause."""
    if retry_after is None:
        return now + MIN_PAUSE_SECONDS
    return max(now, slot.at + retry_after + RETRY_MARGIN_SECONDS)
