"""Fixtures of the web backend's tests: its settings, and the app on a real port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from storywink.config import Settings
from tests.support.services import test_settings
from tests.support.web_app import WEB_SETTINGS, running_app


@pytest.fixture
def web_settings(temporal_env: WorkflowEnvironment, database_url: str, tmp_path: Path) -> Settings:
    """Test settings (local illustrator and storage, own task queues) plus the web's."""
    return test_settings(temporal_env, database_url, tmp_path, **WEB_SETTINGS)


@pytest.fixture
async def web_url(web_settings: Settings) -> AsyncIterator[str]:
    """The base URL of the app serving `web_settings`."""
    async with running_app(web_settings) as url:
        yield url
