"""The baseline of the throughput bench: a bare Temporal fan-out of no-op activities.

Kept in its own module, free of the benches' imports, so the workflow sandbox has
little to re-import.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import activity, workflow

FAN_OUT_WORKFLOW = "BenchFanOut"


@activity.defn
async def noop(index: int) -> int:
    return index


@workflow.defn(name=FAN_OUT_WORKFLOW)
class FanOut:
    """Schedules `count` no-op activities on `task_queue` at once, as BookIllustration
    schedules its pages."""

    @workflow.run
    async def run(self, count: int, task_queue: str) -> int:
        done = await asyncio.gather(
            *(
                workflow.execute_activity(
                    noop, index, task_queue=task_queue, start_to_close_timeout=timedelta(seconds=60)
                )
                for index in range(count)
            )
        )
        return len(done)
