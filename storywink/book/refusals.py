"""Typed refusals a caller can act on (the web backend maps them to 404 / 409)."""

from __future__ import annotations

from storywink import contract
from storywink.contract import BookStatus


class BookError(Exception):
    error_type: str = "BookError"


class BookNotFound(BookError):
    error_type = contract.BOOK_NOT_FOUND

    def __init__(self, book_id: str) -> None:
        super().__init__(f"book {book_id} not found")
        self.book_id = book_id


class BookNotReady(BookError):
    """The book's status does not allow an illustration run (HTTP 409)."""

    error_type = contract.BOOK_NOT_READY

    def __init__(self, book_id: str, status: BookStatus) -> None:
        super().__init__(
            f"book {book_id} is {status.value}; illustration needs STORY_READY, PARTIAL or FAILED"
        )
        self.book_id = book_id
        self.status = status


class BookBusy(BookError):
    """Another workflow run holds the book (HTTP 409)."""

    error_type = contract.BOOK_BUSY

    def __init__(self, book_id: str, workflow_id: str) -> None:
        super().__init__(f"book {book_id} is being illustrated by workflow {workflow_id}")
        self.book_id = book_id
        self.workflow_id = workflow_id


class BookBeingErased(BookBusy):
    """An erasure run holds the book: nothing else may start on it (HTTP 409), and once
    the run is done the book is gone."""

    error_type = contract.BOOK_BEING_ERASED

    def __init__(self, book_id: str, workflow_id: str | None = None) -> None:
        by = f" by workflow {workflow_id}" if workflow_id else ""
        BookError.__init__(self, f"book {book_id} is being erased{by}; nothing can start on it")
        self.book_id = book_id
        self.workflow_id = workflow_id or ""


def refuse_while_erased(book_id: str, status: BookStatus, workflow_id: str | None) -> None:
    """Every run kind but the erasure is refused by a book an erasure run holds."""
    if status is BookStatus.ERASING:
        raise BookBeingErased(book_id, workflow_id)


class WorkflowIdNamesAnotherBook(BookError):
    """A run started under one book's workflow id with another book's id in its input
    (e.g. `temporal workflow start --workflow-id book-illustration-A --input
    '{"book_id": "B"}'`): it would hold A's id while working on B."""

    error_type = contract.BAD_INPUT

    def __init__(self, workflow_id: str, prefix: str, book_id: str) -> None:
        super().__init__(
            f"workflow {workflow_id} names book {workflow_id.removeprefix(prefix)} but its "
            f"input names book {book_id}"
        )
        self.workflow_id = workflow_id
        self.book_id = book_id


def check_workflow_id_names(book_id: str, workflow_id: str, prefix: str) -> None:
    """Refuse a run whose workflow id is another book's (`<prefix><other id>`); a run
    under an id of any other form may work on the book (the claim keeps it to one)."""
    if workflow_id.startswith(prefix) and workflow_id != f"{prefix}{book_id}":
        raise WorkflowIdNamesAnotherBook(workflow_id, prefix, book_id)


class PageNotFound(BookError):
    """A page vanished during a run (its book was deleted)."""

    error_type = contract.PAGE_NOT_FOUND

    def __init__(self, page_id: str) -> None:
        super().__init__(f"page {page_id} not found (deleted during the run?)")
        self.page_id = page_id


class NotIllustrating(BookError):
    """No illustration run works on the book and it has never been settled: nothing to wait for."""

    error_type = "NotIllustrating"

    def __init__(self, book_id: str, status: BookStatus) -> None:
        super().__init__(f"book {book_id} is {status.value} and no illustration run works on it")
        self.book_id = book_id
        self.status = status


class RunEnded(BookError):
    """The run ended without returning an outcome (cancelled, terminated, timed out, failed).

    `status` is the book's status afterwards: settled (a cancelled run still settles it)
    or still ILLUSTRATING when the run could not settle it."""

    error_type = "RunEnded"

    def __init__(
        self, book_id: str, ending: str, status: BookStatus, reason: str | None = None
    ) -> None:
        detail = f": {reason}" if reason else ""
        super().__init__(f"the illustration run of book {book_id} was {ending}{detail}")
        self.book_id = book_id
        self.ending = ending
        self.status = status
        self.reason = reason


class RedrawNotReady(BookNotReady):
    """The book's status does not allow a redraw (HTTP 409): it has not been illustrated."""

    def __init__(self, book_id: str, status: BookStatus) -> None:
        BookError.__init__(
            self,
            f"book {book_id} is {status.value}; a redraw needs a COMPLETED or PARTIAL book "
            "(illustrate it first)",
        )
        self.book_id = book_id
        self.status = status


class NoSuchPage(BookError):
    """A page number the book does not have (HTTP 404)."""

    error_type = contract.PAGE_NOT_FOUND

    def __init__(self, book_id: str, page_number: int, pages: int) -> None:
        super().__init__(f"book {book_id} has no page {page_number} (it has {pages})")
        self.book_id = book_id
        self.page_number = page_number
