"""The `PageRedraw` workflow: a parent's redraw of pages of an illustrated book.

One run per book at a time (`page-redraw-<book>`): every ask that comes while it runs (the
`redraw` signal, sent with signal-with-start by the client) joins it. An ask for a page
already being drawn is the same ask (two clicks, one drawing); an ask for another page is
drawn at once beside it, and the book is settled once, when every page asked has been
drawn. Asks that come while the run settles the book are drawn after, in a new claim.

Only orchestration lives here; every side effect is an idempotent activity.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Final

from temporalio import workflow
from temporalio.common import Priority
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from activities.finalize import FinalizeActivities
    from activities.redraw import RedrawActivities
    from storywink import contract
    from storywink.contract import (
        BookOutcome,
        FinalizeInput,
        NumberedAsk,
        PageResult,
        RedrawAsk,
        RedrawClaimInput,
        RedrawOutcome,
        RedrawProgress,
        RedrawRequest,
    )
    from workflows.common import book_step, draw_page, failure_reason, request_from

# How long a run started with no page in its input waits for the ask of its start signal
# (signal-with-start delivers it with the start: this only bounds a start by hand).
FIRST_ASK_WAIT: Final = timedelta(seconds=30)


@workflow.defn(name=contract.PAGE_REDRAW_WORKFLOW)
class PageRedraw:
    def __init__(self) -> None:
        self._asks: list[NumberedAsk] = []
        self._received = 0  # asks numbered so far: `<chain>/<n>`, in the order they came
        self._drawing: dict[int, asyncio.Task[PageResult]] = {}
        self._redrawn: dict[int, PageResult] = {}
        self._refused: list[str] = []
        self._progress = RedrawProgress(book_id="", phase="starting")

    @workflow.signal(name=contract.REDRAW_SIGNAL)
    def redraw(self, ask: RedrawAsk) -> None:
        self._received += 1
        self._asks.append(_numbered(ask, self._received))

    @workflow.query(name=contract.REDRAW_PROGRESS_QUERY)
    def progress(self) -> RedrawProgress:
        return self._progress

    @workflow.run
    async def run(self, *inputs: object) -> RedrawOutcome:
        request = request_from(RedrawRequest, contract.PAGE_REDRAW_WORKFLOW, inputs)
        workflow.upsert_search_attributes([contract.BOOK_ID_ATTRIBUTE.value_set(request.book_id)])
        self._set_progress(book_id=request.book_id)
        first = request.ask()
        if first is not None:
            self._asks.insert(0, _numbered(first, 0))
        if not await _within(FIRST_ASK_WAIT, lambda: bool(self._asks)):
            raise ApplicationError(
                f"{contract.PAGE_REDRAW_WORKFLOW} was given no page to draw: give "
                '{"book_id": "...", "page_number": N} as its input',
                type=contract.BAD_INPUT,
                non_retryable=True,
            )
        outcome: BookOutcome | None = None
        settlement = 0
        while self._asks:  # asks that came while the book was settled: claim it again
            cancelled = await self._draw_asked(request.book_id, later=outcome is not None)
            if cancelled is None:  # a later claim was refused: the book stays as settled
                break
            self._set_progress(phase="finalizing")
            outcome = await book_step(
                FinalizeActivities.finalize_book,
                FinalizeInput(
                    book_id=request.book_id,
                    run_id=workflow.info().first_execution_run_id,
                    settling_run_id=_settling_id(settlement),
                    cancelled=cancelled,
                ),
            )
            settlement += 1
            workflow.upsert_search_attributes(
                [contract.OUTCOME_ATTRIBUTE.value_set(outcome.status.value)]
            )
            if cancelled:
                self._set_progress(phase="cancelled")
                raise asyncio.CancelledError("redraw run cancelled; book settled")
        assert outcome is not None  # the first claim either held the book or raised
        self._set_progress(phase="done")
        return RedrawOutcome(
            book=outcome,
            redrawn=tuple(self._redrawn[number] for number in sorted(self._redrawn)),
            refused=tuple(self._refused),
        )

    async def _draw_asked(self, book_id: str, *, later: bool) -> bool | None:
        """Claim the book for the asked pages and draw them, and those asked meanwhile;
        return whether the run was cancelled, or None when a later claim was refused."""
        try:
            while self._asks or self._drawing:
                if self._asks:
                    if not await self._start_asked(book_id, refused_is_final=not later):
                        return None
                    later = True  # the book is ours now: the next claims keep it
                    continue
                await workflow.wait_condition(
                    lambda: bool(self._asks) or any(t.done() for t in self._drawing.values())
                )
                self._collect_drawn()
        except asyncio.CancelledError:
            await self._stop_drawing()
            return True
        return False

    async def _start_asked(self, book_id: str, *, refused_is_final: bool) -> bool:
        """Claim the book for the waiting asks and start drawing their pages; False when
        the claim was refused (raised instead when it is the run's first)."""
        asks = _one_per_page(self._asks, exclude=set(self._drawing))
        self._asks.clear()
        if not asks:
            return True
        info = workflow.info()
        try:
            plan = await book_step(
                RedrawActivities.claim_redraw,
                RedrawClaimInput(
                    book_id=book_id,
                    workflow_id=info.workflow_id,
                    run_id=info.first_execution_run_id,
                    asks=asks,
                ),
                cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            )
        except ActivityError as error:
            if is_cancelled_exception(error):
                raise asyncio.CancelledError() from None
            if refused_is_final:
                raise
            self._refused.append(failure_reason(error, "claim"))
            return False
        workflow.upsert_search_attributes([contract.USER_ID_ATTRIBUTE.value_set(plan.user_id)])
        self._refused.extend(plan.refused)
        for result in plan.recorded:  # drawn before a reset of this run
            self._redrawn[result.page_number] = result
        # Fair between parents, as every page is (one fairness key per account).
        priority = Priority(fairness_key=plan.user_id)
        for page in plan.pages:
            self._drawing[page.page_number] = asyncio.create_task(
                draw_page(page, plan.page_options, priority)
            )
        self._set_progress(phase="drawing")
        return True

    def _collect_drawn(self) -> None:
        for number, task in list(self._drawing.items()):
            if task.done():
                del self._drawing[number]
                self._redrawn[number] = task.result()  # raises CancelledError if cancelled
        self._set_progress()

    async def _stop_drawing(self) -> None:
        """On cancel: every page being drawn stops and records where, before the book is
        settled."""
        for task in self._drawing.values():
            task.cancel()
        await asyncio.gather(*self._drawing.values(), return_exceptions=True)
        for number, task in self._drawing.items():
            if not task.cancelled() and task.exception() is None:
                self._redrawn[number] = task.result()
        self._drawing.clear()

    def _set_progress(self, **changes: object) -> None:
        changes.setdefault("drawing", tuple(sorted(self._drawing)))
        changes.setdefault("redrawn", tuple(sorted(self._redrawn)))
        self._progress = self._progress.model_copy(update=changes)
        p = self._progress
        drawing = ", ".join(map(str, p.drawing)) or "none"
        workflow.set_current_details(
            f"**{p.phase}** — drawing pages: {drawing}; {len(p.redrawn)} redrawn"
        )


def _numbered(ask: RedrawAsk, number: int) -> NumberedAsk:
    chain = workflow.info().first_execution_run_id
    return NumberedAsk(ask_id=f"{chain}/{number}", page_number=ask.page_number, note=ask.note)


def _one_per_page(asks: list[NumberedAsk], exclude: set[int]) -> tuple[NumberedAsk, ...]:
    """One ask per page, the last, with the last note given for it (a click without one
    keeps it), leaving out the pages being drawn already."""
    latest: dict[int, NumberedAsk] = {}
    for ask in asks:
        if ask.page_number in exclude:
            continue
        earlier = latest.get(ask.page_number)
        note = ask.note or (earlier.note if earlier else None)
        latest[ask.page_number] = ask.model_copy(update={"note": note})
    return tuple(latest[number] for number in sorted(latest))


def _settling_id(settlement: int) -> str:
    """The key of a settlement's one notification: the run, and which of its settlements."""
    run_id = workflow.info().run_id
    return run_id if settlement == 0 else f"{run_id}/{settlement}"


async def _within(limit: timedelta, condition: Callable[[], bool]) -> bool:
    try:
        await workflow.wait_condition(condition, timeout=limit)
    except TimeoutError:
        return False
    return True
