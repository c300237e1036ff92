"""Whether work that reached this worker belongs to its fleet (storywink.db.fleet).

Work of another fleet fails its attempt retryably, before anything is read, fetched, paid
or written, so it waits for a worker of its own fleet; the worker says so in one line
(and the worker process stops: `on_disagreement`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from storywink import contract
from storywink.contract import PageTask
from storywink.db.fleet import FLEET_MEMO

RETRY_AFTER = timedelta(seconds=1)


@dataclass(frozen=True)
class WorkerFleet:
    """The fleet this worker serves, what it serves in words, and who hears that work of
    another fleet reached it."""

    fleet_id: str
    serves: str
    on_disagreement: Callable[[str], None] | None = None

    def check_task(self, task: PageTask) -> None:
        """A page prepared by another fleet's database."""
        if task.fleet_id is not None and task.fleet_id != self.fleet_id:
            self._refuse(
                f"page {task.page_number} of book {task.book_id} was prepared by fleet "
                f"{task.fleet_id}"
            )

    async def check_run(self, temporal: Client) -> None:
        """A run started by a client of another fleet's database (its memo names the
        fleet; a run started without one, e.g. from the `temporal` CLI, is not checked)."""
        info = activity.info()
        if info.workflow_id is None:
            return
        try:
            described = await temporal.get_workflow_handle(
                info.workflow_id, run_id=info.workflow_run_id
            ).describe()
            started_by = await described.memo_value(FLEET_MEMO, default=None)
        except (RPCError, TypeError, ValueError) as exc:
            activity.logger.warning("fleet of run not checked (%s)", type(exc).__name__)
            return
        if isinstance(started_by, str) and started_by != self.fleet_id:
            self._refuse(f"run {info.workflow_id} was started for fleet {started_by}")

    def _refuse(self, what: str) -> None:
        message = (
            f"{what}, but this worker serves fleet {self.fleet_id} ({self.serves}): left "
            "for a worker of its fleet; every worker must use the same DATABASE_URL and "
            "STORAGE_DIR"
        )
        activity.logger.error(message)
        if self.on_disagreement is not None:
            self.on_disagreement(message)
        raise ApplicationError(message, type=contract.WRONG_FLEET, next_retry_delay=RETRY_AFTER)
