"""The API fuzzed against its own OpenAPI document (schemathesis, bounded in examples and
time, with a valid token): no 5xx, and every answer matches the schema.

Every default check runs but `positive_data_acceptance`: a schema-valid upload is still
refused (422) when its bytes are not a decodable photo, which no schema can say."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import positive_data_acceptance
from temporalio.testing import WorkflowEnvironment

from storywink.db.connection import Database
from tests.support.helpers import create_book
from tests.support.services import test_settings
from tests.support.web_app import WEB_SETTINGS, app_in_thread, bearer, token_for

USER = "parent-fuzz"
EXAMPLES_PER_OPERATION = 12


def test_the_api_answers_as_its_openapi_says(
    temporal_env: WorkflowEnvironment, database_url: str, database: Database, tmp_path: Path
) -> None:
    web = test_settings(temporal_env, database_url, tmp_path, **WEB_SETTINGS)
    create_book(database, [None, None], user_id=USER)  # something to list
    headers = bearer(token_for(USER))
    fuzzed = []
    with app_in_thread(web) as url:
        schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
        for result in schema.get_all_operations():
            assert isinstance(result, Ok), result
            operation = result.ok()

            @given(case=operation.as_strategy())
            @settings(
                max_examples=EXAMPLES_PER_OPERATION,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def answers_as_documented(case: Any) -> None:
                case.call_and_validate(
                    headers=headers, timeout=10, excluded_checks=[positive_data_acceptance]
                )

            answers_as_documented()
            fuzzed.append(operation.label)
    assert len(fuzzed) >= 10, fuzzed
