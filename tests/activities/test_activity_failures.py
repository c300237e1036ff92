"""Which database errors are retried, and how short their reasons stay."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import exc as sa

from activities.failures import database_failure
from storywink import contract

STATEMENT = "UPDATE books SET claim_workflow_id=%(wf)s WHERE books.id = %(id)s"
PARAMS = {"wf": "x" * 5000, "id": "b1"}


def wrapped(error_type: type[sa.DBAPIError], driver_error: Exception) -> sa.DBAPIError:
    return error_type(STATEMENT, PARAMS, driver_error)


@pytest.mark.parametrize(
    "error",
    [
        wrapped(sa.OperationalError, psycopg.OperationalError("connection refused")),
        wrapped(sa.OperationalError, psycopg.errors.SerializationFailure("could not serialize")),
        wrapped(sa.OperationalError, psycopg.errors.DeadlockDetected("deadlock detected")),
        wrapped(sa.InterfaceError, psycopg.InterfaceError("connection already closed")),
        sa.TimeoutError("QueuePool limit of size 5 overflow 10 reached"),
    ],
)
def test_an_unavailable_database_is_retried(error: sa.SQLAlchemyError) -> None:
    failure = database_failure(error)
    assert not failure.non_retryable
    assert failure.type == contract.DATABASE_UNAVAILABLE
    assert failure.message.startswith("database unavailable: ")


@pytest.mark.parametrize(
    ("error", "says"),
    [
        (
            wrapped(
                sa.DataError,
                psycopg.errors.StringDataRightTruncation(
                    "value too long for type character varying(200)"
                ),
            ),
            "value too long for type character varying(200)",
        ),
        (
            wrapped(
                sa.IntegrityError,
                psycopg.errors.UniqueViolation('duplicate key value violates "uq_pages"'),
            ),
            "duplicate key value",
        ),
        (
            wrapped(sa.ProgrammingError, psycopg.errors.UndefinedColumn("column x does not exist")),
            "column x does not exist",
        ),
    ],
)
def test_data_the_database_rejects_is_not_retried(error: sa.SQLAlchemyError, says: str) -> None:
    failure = database_failure(error, "record")
    assert failure.non_retryable
    assert failure.type == contract.DATABASE_REJECTED
    assert failure.message.startswith("record: database rejected the data: ")
    assert says in failure.message


def test_a_reason_is_one_short_line_without_the_statement_or_its_parameters() -> None:
    driver_error = psycopg.errors.StringDataRightTruncation("value too long\nDETAIL: " + "y" * 900)
    failure = database_failure(wrapped(sa.DataError, driver_error))
    assert "\n" not in failure.message
    assert len(failure.message) <= 240
    assert "UPDATE" not in failure.message and "xxxx" not in failure.message


def test_a_password_in_a_driver_message_is_redacted() -> None:
    driver_error = psycopg.OperationalError(
        "connection to postgresql://app:hunter2-secret@db:5432/app failed"
    )
    failure = database_failure(wrapped(sa.OperationalError, driver_error))
    assert "hunter2-secret" not in failure.message
