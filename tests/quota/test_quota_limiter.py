"""The shared limiter of the image model's calls: its arithmetic (storywink.quota.slots), run
against a simulated provider with a sliding-window quota like the fake Gemini's; the order
in which a worker's waiting calls get its slots (storywink.quota.queue); and its database
row shared by two limiters (two workers) on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest

from storywink.db.connection import Database
from storywink.quota import slots as quota
from storywink.quota.limiter import RECHECK_SECONDS, SharedLimiter
from storywink.quota.queue import LocalQueue

LIMIT = 60.0  # per minute


def _reserve_many(state: quota.QuotaState, n: int, now: float) -> list[quota.Slot]:
    slots = []
    for _ in range(n):
        state, slot = quota.reserve(state, LIMIT, now)
        slots.append(slot)
    return slots


def test_slots_start_now_and_are_evenly_spaced_with_no_burst() -> None:
    slots = _reserve_many(quota.QuotaState(), 5, now=1000.0)
    gap = 60 / (LIMIT * (1 - quota.HEADROOM))
    assert [s.at for s in slots] == pytest.approx([1000.0 + k * gap for k in range(5)])


def test_an_idle_limiter_starts_at_once_without_a_saved_up_burst() -> None:
    state, _ = quota.reserve(quota.QuotaState(), LIMIT, now=0.0)
    later = _reserve_many(state, 3, now=500.0)  # idle for minutes: no credit saved up
    assert [s.at for s in later] == pytest.approx([500.0, 500.0 + 60 / 59.4, 500.0 + 120 / 59.4])


def test_a_429_lowers_the_rate_pauses_past_its_delay_and_voids_earlier_slots() -> None:
    state = quota.QuotaState()
    state, first = quota.reserve(state, LIMIT, 0.0)
    state, second = quota.reserve(state, LIMIT, 0.0)
    # Answered at t=2 for the call made at t=0: the provider's 4 s count from the call.
    lowered = quota.rejected(state, LIMIT, 2.0, first, retry_after=4.0)
    resume = 4.0 + quota.RETRY_MARGIN_SECONDS
    assert lowered.rate == pytest.approx(LIMIT * quota.FAR_DECREASE)
    assert lowered.next_free == pytest.approx(resume)
    assert not quota.still_valid(lowered, second)
    # The second call of the same overrun (reserved before the decrease) changes nothing.
    assert quota.rejected(lowered, LIMIT, 2.5, second, retry_after=4.0) is lowered
    _, again = quota.reserve(lowered, LIMIT, 2.5)
    assert again.at == pytest.approx(resume)


def test_a_429_whose_delay_is_under_a_slot_only_shifts_the_schedule() -> None:
    """A call that reached the provider a little early (a slow first request, jitter): the
    rate is right; the slots reserved before move past the delay."""
    state, slot = quota.reserve(quota.QuotaState(), LIMIT, 0.0)
    state, later = quota.reserve(state, LIMIT, 0.0)
    shifted = quota.rejected(state, LIMIT, 40.5, slot, retry_after=0.2)
    assert quota.current_rate(shifted, LIMIT, 100.0) == LIMIT
    assert shifted.next_free == pytest.approx(40.7)
    assert not quota.still_valid(shifted, later)
    # Another one soon after: the quota is below the limit after all.
    shifted, again = quota.reserve(shifted, LIMIT, 41.0)
    lowered = quota.rejected(shifted, LIMIT, 41.5, again, retry_after=0.2)
    assert lowered.rate == pytest.approx(LIMIT * quota.FAR_DECREASE)


def test_a_429_without_retry_info_still_pauses_the_fleet() -> None:
    state, slot = quota.reserve(quota.QuotaState(), LIMIT, 0.0)
    lowered = quota.rejected(state, LIMIT, 1.0, slot, retry_after=None)
    assert lowered.next_free == pytest.approx(1.0 + quota.MIN_PAUSE_SECONDS)


def test_the_rate_holds_after_a_429_then_climbs_back_to_the_limit() -> None:
    state, slot = quota.reserve(quota.QuotaState(), LIMIT, 0.0)
    lowered = quota.rejected(state, LIMIT, 0.0, slot, retry_after=None)
    assert quota.current_rate(lowered, LIMIT, quota.HOLD_SECONDS) == pytest.approx(30.0)
    rates = [quota.current_rate(lowered, LIMIT, quota.HOLD_SECONDS + t) for t in range(0, 60, 5)]
    assert rates == sorted(rates)
    assert quota.current_rate(lowered, LIMIT, quota.HOLD_SECONDS + 45) == LIMIT


def test_a_429_to_a_probe_above_the_held_rate_goes_back_no_lower_than_that_rate() -> None:
    state, slot = quota.reserve(quota.QuotaState(), LIMIT, 0.0)
    state = quota.rejected(state, LIMIT, 0.0, slot, retry_after=None)  # 60 -> 30, held
    probe_at = quota.HOLD_SECONDS + 15.0
    probe = quota.current_rate(state, LIMIT, probe_at)
    state, slot = quota.reserve(state, LIMIT, probe_at)
    back = quota.rejected(state, LIMIT, probe_at, slot, retry_after=None)
    # The quota lies between 30 and the probe: not halved, held longer, then probed slowly.
    assert back.rate == pytest.approx(max(30.0, probe * quota.NEAR_DECREASE))
    assert 30.0 <= (back.rate or 0) < probe
    resumed = probe_at + quota.PROBE_HOLD_SECONDS
    assert quota.current_rate(back, LIMIT, resumed) == back.rate
    assert quota.current_rate(back, LIMIT, resumed + 5) < (back.rate or 0) + 1


def test_a_429_near_the_last_overrun_lowers_the_rate_less() -> None:
    state, slot = quota.reserve(quota.QuotaState(), LIMIT, 0.0)
    state = quota.rejected(state, LIMIT, 0.0, slot, retry_after=None)  # overrun 60 -> 30
    state, slot = quota.reserve(state, LIMIT, 100.0)  # climbed back to 60
    near = quota.rejected(state, LIMIT, 100.0, slot, retry_after=None)
    assert near.rate == pytest.approx(LIMIT * quota.NEAR_DECREASE)


@dataclass
class Simulated:
    ok: list[float]
    rejected: list[float]

    def ok_per_minute(self, start: float, end: float) -> float:
        return sum(1 for t in self.ok if start <= t < end) / (end - start) * 60

    def rejections(self, start: float, end: float) -> int:
        return sum(1 for t in self.rejected if start <= t < end)


def simulate(
    phases: list[tuple[float, int]],
    window: float,
    *,
    latency: float = 3.0,
    pages_at_once: int = 9,
    until: float,
    retry_info: bool = True,
) -> Simulated:
    """`pages_at_once` pages in flight call the model through the limiter; the provider
    answers 429 beyond its quota (per sliding `window`, changed at each phase's start,
    which empties the window as the fake's `set_quota` does) after `latency`, with the
    wait until its window frees a call as RetryInfo when `retry_info`."""
    state = quota.QuotaState()
    hits: deque[float] = deque()
    result = Simulated([], [])
    order = itertools.count()
    events: list[tuple[float, int, str, object]] = []
    for _ in range(pages_at_once):
        heapq.heappush(events, (0.0, next(order), "reserve", None))
    for start, per_window in phases:
        heapq.heappush(events, (start, next(order), "quota", per_window))
    allowed = 0
    while events:
        now, _, kind, data = heapq.heappop(events)
        if now > until:
            break
        if kind == "quota":
            assert isinstance(data, int)
            allowed = data
            hits.clear()
        elif kind == "reserve":
            state, slot = quota.reserve(state, LIMIT, now)
            heapq.heappush(events, (slot.at, next(order), "call", slot))
        elif kind == "call":
            assert isinstance(data, quota.Slot)
            if not quota.still_valid(state, data):
                heapq.heappush(events, (now, next(order), "reserve", None))
                continue
            while hits and now - hits[0] >= window:
                hits.popleft()
            if len(hits) < allowed:
                hits.append(now)
                result.ok.append(now)
                heapq.heappush(events, (now + latency, next(order), "reserve", None))
            else:
                result.rejected.append(now)
                delay = window - (now - hits[0]) if retry_info else None
                heapq.heappush(events, (now + latency, next(order), "429", (data, delay)))
        elif kind == "429":
            slot, delay = data  # type: ignore[misc]
            state = quota.rejected(state, LIMIT, now, slot, delay)
            heapq.heappush(events, (now, next(order), "reserve", None))
    return result


@pytest.mark.parametrize("window", [10.0, 60.0])
def test_at_the_limit_the_quota_is_used_fully_with_no_429(window: float) -> None:
    per_window = round(LIMIT * window / 60)
    run = simulate([(0.0, per_window)], window, until=180.0)
    assert run.rejected == []
    assert run.ok_per_minute(0.0, 180.0) >= 0.98 * LIMIT


@pytest.mark.parametrize("retry_info", [True, False])
def test_when_the_quota_halves_the_fleet_slows_down_then_climbs_back(retry_info: bool) -> None:
    """60/min, then 30/min from t=60 s, then 60/min from t=150 s (10 s windows). The first
    429s are the calls already in flight when the first one answers (latency 3 s)."""
    run = simulate([(0.0, 10), (60.0, 5), (150.0, 10)], 10.0, until=270.0, retry_info=retry_info)
    assert run.rejections(0.0, 60.0) == 0
    assert run.rejections(60.0, 90.0) <= 5
    assert run.rejections(90.0, 150.0) <= 4
    assert run.ok_per_minute(70.0, 150.0) >= 0.7 * 30
    assert run.rejections(150.0, 270.0) == 0
    assert run.ok_per_minute(190.0, 210.0) >= 0.9 * LIMIT  # back within 60 s


def _served(queue: LocalQueue[str]) -> list[str]:
    order = []
    while (item := queue.pop()) is not None:
        order.append(item)
    return order


def test_a_workers_slot_goes_to_the_lowest_priority_key_first() -> None:
    queue: LocalQueue[str] = LocalQueue()
    queue.join("backlog", priority_key=None, owner="a")  # unset: Temporal's default, 3
    queue.join("last", priority_key=5, owner="a")
    queue.join("reprint", priority_key=1, owner="a")
    assert _served(queue) == ["reprint", "backlog", "last"]


def test_a_small_books_page_overtakes_the_big_books_pages_taken_before_it() -> None:
    queue: LocalQueue[str] = LocalQueue()
    for page in ("big-1", "big-2", "big-3"):
        queue.join(page, owner="parent-a")
    queue.join("small-b", owner="parent-b")
    queue.join("small-c", owner="parent-c")
    # First-come first-served would give big-1, big-2, big-3, small-b, small-c.
    assert _served(queue) == ["big-1", "small-b", "small-c", "big-2", "big-3"]


def test_an_owner_arriving_late_starts_level_with_the_least_served_and_nobody_starves() -> None:
    queue: LocalQueue[str] = LocalQueue()
    for n in range(8):
        queue.join(f"a{n}", owner="a")
    assert [queue.pop() for _ in range(5)] == ["a0", "a1", "a2", "a3", "a4"]
    for n in range(3):
        queue.join(f"b{n}", owner="b")
    # b is not owed the five slots a had before it came: the two alternate.
    assert _served(queue) == ["a5", "b0", "a6", "b1", "a7", "b2"]


def test_pages_of_one_owner_and_priority_go_in_arrival_order_and_a_leaver_is_skipped() -> None:
    queue: LocalQueue[str] = LocalQueue()
    tickets = [queue.join(f"p{n}", owner="a") for n in range(4)]
    queue.leave(tickets[1])
    assert _served(queue) == ["p0", "p2", "p3"]
    assert len(queue) == 0


def test_after_a_drop_the_new_quota_is_used_within_30_s_and_the_old_one_within_60_s() -> None:
    """bench/adaptive's run: 60/min, 30/min from t=40 s, 60/min again from t=100 s (10 s
    windows, model latency 1 s, 9 pages in flight); issue 12's goals, RetryInfo given."""
    run = simulate([(0.0, 10), (40.0, 5), (100.0, 10)], 10.0, latency=1.0, until=160.0)
    assert run.rejections(40.0, 100.0) <= 5
    assert run.ok_per_minute(50.0, 70.0) >= 0.9 * 30  # the 20 s before drop + 30 s
    assert run.ok_per_minute(140.0, 160.0) >= 0.9 * LIMIT  # ... before rise + 60 s


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps = 0
        self.on_sleep: Callable[[int], Awaitable[None]] | None = None

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        if self.on_sleep is not None:
            await self.on_sleep(self.sleeps)
        self.now += seconds


def _limiter(database: Database, clock: FakeClock, per_minute: float, name: str) -> SharedLimiter:
    return SharedLimiter(database.sessions, per_minute, name=name, clock=clock, sleep=clock.sleep)


FAST = 600.0  # per minute: one worker's limiter in the local queue's tests
FAST_GAP = 60 / (FAST * (1 - quota.HEADROOM))  # seconds between its slots


def _fast_limiter(database: Database) -> tuple[FakeClock, SharedLimiter]:
    """A fake clock and a limiter at FAST on a row of its own."""
    clock = FakeClock()
    return clock, _limiter(database, clock, FAST, f"test-{uuid.uuid4().hex[:8]}")


async def _slots_in_order(
    tasks: dict[str, asyncio.Task[quota.Slot]],
) -> list[str]:
    done = {key: await asyncio.wait_for(task, timeout=5) for key, task in tasks.items()}
    return sorted(done, key=lambda key: done[key].at)


async def test_a_worker_gives_each_slot_to_its_best_waiting_page(database: Database) -> None:
    """Pages taken from Temporal in the order big, big, small, priority-1 get the process's
    slots by priority, then owner, then arrival; one reservation at a time, none lost."""
    _, limiter = _fast_limiter(database)
    tasks = {
        "big-1": asyncio.create_task(limiter.acquire(None, "parent-a")),
        "big-2": asyncio.create_task(limiter.acquire(None, "parent-a")),
        "small": asyncio.create_task(limiter.acquire(None, "parent-b")),
        "reprint": asyncio.create_task(limiter.acquire(1, "parent-a")),
    }
    # After the reprint parent-a has had a slot: parent-b's page comes before its backlog.
    assert await _slots_in_order(tasks) == ["reprint", "small", "big-1", "big-2"]
    ats = sorted(task.result().at for task in tasks.values())
    assert ats == pytest.approx([1000.0 + k * FAST_GAP for k in range(4)])


async def test_a_page_cancelled_while_waiting_leaves_the_queue_and_costs_no_slot(
    database: Database,
) -> None:
    _, limiter = _fast_limiter(database)
    tasks = {page: asyncio.create_task(limiter.acquire(None, "a")) for page in ("p1", "p2", "p3")}
    tasks["p2"].cancel()
    with pytest.raises(asyncio.CancelledError):
        await tasks.pop("p2")
    assert await _slots_in_order(tasks) == ["p1", "p3"]
    assert tasks["p3"].result().at == pytest.approx(1000.0 + FAST_GAP)


async def test_a_slot_whose_page_went_away_as_it_came_goes_to_the_next_page(
    database: Database,
) -> None:
    clock, limiter = _fast_limiter(database)
    tasks = {page: asyncio.create_task(limiter.acquire(None, "a")) for page in ("p1", "p2", "p3")}

    async def cancel_p2_as_its_slot_comes(sleeps: int) -> None:
        if sleeps == 1:  # the final sleep before the second slot, which goes to p2
            asyncio.get_running_loop().call_soon(tasks["p2"].cancel)

    clock.on_sleep = cancel_p2_as_its_slot_comes
    first = await asyncio.wait_for(tasks["p1"], timeout=5)
    with pytest.raises(asyncio.CancelledError):
        await tasks["p2"]
    handed_over = await asyncio.wait_for(tasks["p3"], timeout=5)
    assert handed_over.at == pytest.approx(first.at + FAST_GAP)


async def test_a_429_elsewhere_during_the_wait_voids_the_slot_and_it_is_reserved_again(
    database: Database,
) -> None:
    name = f"test-{uuid.uuid4().hex[:8]}"
    clock = FakeClock()
    mine, other = _limiter(database, clock, 6.0, name), _limiter(database, clock, 6.0, name)
    theirs = await other.acquire()

    async def a_429_elsewhere(sleeps: int) -> None:
        if sleeps == 1:
            await other.rejected(theirs, retry_after=None)

    clock.on_sleep = a_429_elsewhere
    slot = await asyncio.wait_for(mine.acquire(), timeout=5)
    void_at = theirs.at + 60 / (6.0 * (1 - quota.HEADROOM))
    assert slot.epoch == theirs.epoch + 1
    assert slot.at == pytest.approx(1000.0 + RECHECK_SECONDS)  # the re-check after the 429
    assert slot.at < void_at


async def test_two_workers_share_one_row_and_a_429_slows_both(database: Database) -> None:
    name = f"test-{uuid.uuid4().hex[:8]}"
    clock = FakeClock()
    a, b = _limiter(database, clock, FAST, name), _limiter(database, clock, FAST, name)
    first = await a.acquire()
    second = await asyncio.wait_for(b.acquire(), timeout=5)  # waited on the fake clock
    assert first.at == pytest.approx(1000.0)
    assert second.at == pytest.approx(1000.0 + FAST_GAP)
    assert clock.now == pytest.approx(second.at)
    await b.rejected(second, retry_after=None)
    third = await asyncio.wait_for(a.acquire(), timeout=5)
    assert third.epoch == second.epoch + 1
    assert third.at == pytest.approx(second.at + quota.MIN_PAUSE_SECONDS)
    gap = (await asyncio.wait_for(b.acquire(), timeout=5)).at - third.at
    assert gap == pytest.approx(60 / (FAST * quota.FAR_DECREASE * (1 - quota.HEADROOM)))
